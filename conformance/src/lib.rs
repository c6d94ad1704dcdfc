//! sansa-conformance
