//! The `producer` binary: the services' shared skeleton ([`common::service`]) around
//! [`producer::run`].

fn main() -> anyhow::Result<()> {
    common::service::main(producer::run)
}
