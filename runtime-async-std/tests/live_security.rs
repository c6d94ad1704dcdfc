//! The live security scenarios (TLS and SASL listeners of `kafka up --security`) on this
//! runtime; `./test.sh` sets `KAFKA_SECURITY_CLIENTS`.

mod common;
mod live_adapter;

use common::Exec;
use live_adapter::Runtime;
use sansa_conformance::live_security::run_all;

#[test]
#[ignore = "needs Kafka with --security: ./test.sh runs it"]
fn live_security_suite_async_std() {
    run_all(&Runtime(Exec::AsyncStd));
}

#[test]
#[ignore = "needs Kafka with --security: ./test.sh runs it"]
fn live_security_suite_smol() {
    run_all(&Runtime(Exec::Smol));
}
