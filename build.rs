//! Compiles proto/workload.proto with protox (pure Rust): no system protoc is needed. Only
//! with the `workload-api` feature, the one that uses the generated code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "workload-api")]
    {
        let proto = "proto/workload.proto";
        println!("cargo:rerun-if-changed={proto}");
        let descriptors = protox::compile([proto], ["proto"])?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(descriptors)?;
    }
    Ok(())
}
