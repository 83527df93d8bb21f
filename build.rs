//! Compiles proto/workload.proto (and the gRPC examples' proto/examples/hello.proto) with
//! protox (pure Rust): no system protoc is needed. Only with the `workload-api` feature, the
//! one that uses the generated code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "workload-api")]
    {
        let protos = ["proto/workload.proto", "proto/examples/hello.proto"];
        for proto in protos {
            println!("cargo:rerun-if-changed={proto}");
        }
        let descriptors = protox::compile(protos, ["proto"])?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            // Messages holding a private key or a token: their Debug, written by hand in
            // src/workload/mod.rs, redacts it.
            .skip_debug([".X509SVID", ".JWTSVID", ".ValidateJWTSVIDRequest"])
            .compile_fds(descriptors)?;
    }
    Ok(())
}
