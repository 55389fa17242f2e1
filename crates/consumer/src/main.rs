//! The `consumer` binary: the services' shared skeleton ([`common::service`]) around
//! [`consumer::run`].

fn main() -> anyhow::Result<()> {
    common::service::main(consumer::run)
}
