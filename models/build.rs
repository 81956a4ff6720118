//! Embeds libtorch's lib folder as an rpath so test binaries run without LD_LIBRARY_PATH, and
//! compiles the C++ shim for the operator tch does not bind (csrc/conv_pointwise.cpp).
fn main() {
    println!("cargo:rerun-if-changed=csrc/conv_pointwise.cpp");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("torch-sys did not say where libtorch is (DEP_TCH_LIBTORCH_LIB): run scripts/setup");
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let include = std::path::Path::new(&lib).join("../include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .file("csrc/conv_pointwise.cpp")
        .compile("fracture_conv_pointwise");
}
