//! The root test package builds and sees the testkit (placeholder until the reader matrix
//! lands).

#[test]
fn edge_tree_scans() {
    let tmp = squashbox_testkit::tempfile::tempdir().unwrap();
    let root = tmp.path().join("t");
    let opts = squashbox_testkit::EdgeTreeOptions::cheap().without_root_parts();
    squashbox_testkit::EdgeTree::create(&root, &opts).unwrap();
    let m = squashbox_testkit::Manifest::scan(&root).unwrap();
    assert!(m.len() > 100);
}
