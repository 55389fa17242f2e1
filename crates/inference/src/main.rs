//! The `inference` binary: the services' shared skeleton ([`common::service`]) around
//! [`inference::run`].

fn main() -> anyhow::Result<()> {
    common::service::main(inference::run)
}
