fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut opts = squashbox_build::BuildOptions::default();
    if let Some(c) = args.get(3) {
        opts.compressor = squashbox_format::Compressor::from_name(c).unwrap();
    }
    if let Some(b) = args.get(4) {
        opts.block_size = b.parse().unwrap();
    }
    let s = squashbox_build::build_image(args[1].as_ref(), args[2].as_ref(), &opts).unwrap();
    println!("{s:?}");
}
