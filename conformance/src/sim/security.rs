//! Security in the simulator. Some seeds put every broker behind TLS, SASL or both
//! ([`draw`]): every client then handshakes on every connection, under the run's faults
//! (bytes delivered in chunks at random boundaries, connections dropped and reset, brokers
//! stopped, and, from [`faults`], disconnects and stalls aimed at SaslHandshake and
//! SaslAuthenticate, so connections die in the middle of a login). At the end of such a run,
//! [`episodes`] aim at logins:
//!
//! - a client with a wrong password gets a typed authentication error, well before its
//!   request timeout, and nothing else breaks (`failed-login-typed`);
//! - a broker hangs up in the middle of a new client's login: the client logs in again and
//!   is served within the liveness bound (a probe);
//! - with a legacy listener (Kafka 0.10-0.11, raw tokens), the wrong password ends in the
//!   hang-up such a broker refuses with, named as a probable refusal, and the hang-up
//!   aimed at the login is at SaslHandshake (there is no SaslAuthenticate);
//! - with SCRAM, an impostor broker (its server signature forged): the client must refuse it
//!   and send nothing more (`scram-server-signature-checked`; plant
//!   `scram-skips-server-signature`).

use std::time::Duration;

use sansa::protocol::ApiKey;
use sansa::rand::Rng;
use sansa::security::{AuthError, SaslMechanism, ScramHash};
use sansa::{CloseCause, Event, LocalClose, RequestError};

use super::harness::{Action, ClientConfig, Sim, SimError, SimSecurity, Work};
use super::scenario::MAX_STEPS;
use crate::fake_cluster::{Fault, FaultAction};

/// The listener of `seed`'s run, from a stream of its own (so the rest of the scenario is
/// the same either way): about one seed in twenty has one, so that the seeds per second
/// stay within a tenth of a run without. SCRAM-SHA-512 is the rarest: its PBKDF2 on every
/// login costs a run about six times its usual time.
pub fn draw(seed: u64) -> Option<SimSecurity> {
    let mut rng = Rng::stream(seed, "sim-security");
    if rng.below(20) != 0 {
        return None;
    }
    let mechanism = match rng.below(16) {
        0..=3 => None,
        4..=7 => Some(SaslMechanism::Plain),
        8..=14 => Some(SaslMechanism::Scram(ScramHash::Sha256)),
        _ => Some(SaslMechanism::Scram(ScramHash::Sha512)),
    };
    let tls = mechanism.is_none() || rng.below(2) == 0;
    // Sessions of 30 to 70 s: clients re-authenticate more than once in a run (KIP-368),
    // checked by the `sasl-sessions-renewed` invariant. Shorter ones would lose the race the
    // protocol accepts: a request sent just before the client's renewal point (85-95% of the
    // lifetime) may arrive after the expiry when the network delays the exchange by more
    // than the remaining 5% (Java's client has it too; real sessions last hours). The
    // links' usual delays stay within 2.2% of 30 s each way; the harness caps the slow links
    // of the faults to 2% of the session (`LinkProfile::capped`).
    let session_lifetime = mechanism.map(|_| Duration::from_millis(30_000 + rng.below(40_000)));
    // About one SASL seed in five has brokers before 1.0 (raw tokens), drawn from a stream
    // of its own so that every other draw of every seed stays what it was.
    let legacy = mechanism.is_some() && Rng::stream(seed, "sim-security-legacy").below(5) == 0;
    Some(SimSecurity { mechanism, tls, session_lifetime, legacy })
}

/// Faults aimed at the SASL requests while the run's faults last: hang-ups and stalls in
/// the middle of logins.
pub fn faults(seed: u64, security: SimSecurity, faults_end: Duration, actions: &mut Vec<(Duration, Action)>) {
    if security.mechanism.is_none() {
        return;
    }
    let mut rng = Rng::stream(seed, "sim-security-faults");
    for _ in 0..1 + rng.below(3) {
        let at = Duration::from_millis(rng.below(faults_end.as_millis() as u64));
        let api = if rng.below(2) == 0 { ApiKey::SaslHandshake } else { ApiKey::SaslAuthenticate };
        let action = match rng.below(3) {
            0 => FaultAction::Swallow,
            1 => FaultAction::Delay(Duration::from_millis(10 + rng.below(2_000))),
            _ => FaultAction::Disconnect,
        };
        let fault = Fault::new(action).on_api(api).times(1 + rng.below(3) as u32);
        actions.push((at, Action::Inject(fault)));
    }
}

/// The authentication error a command ended in, if that is how it ended.
fn auth_error(e: &Event) -> Option<&AuthError> {
    let err = match e {
        Event::Response { result: Err(e), .. }
        | Event::Metadata { result: Err(e), .. }
        | Event::Versions { result: Err(e), .. } => e,
        _ => return None,
    };
    match err {
        RequestError::Unreachable { cause: CloseCause::Local(LocalClose::Authentication(a)), .. }
        | RequestError::Disconnected { cause: CloseCause::Local(LocalClose::Authentication(a)), .. } => Some(a),
        _ => None,
    }
}

/// How long a refused login may take to fail its command: a few round trips, far below any
/// request timeout (the links are calm during episodes).
const FAILED_LOGIN_BOUND: Duration = Duration::from_secs(2);

/// The login episodes, for a run with SASL (see the module docs).
pub fn episodes(sim: &mut Sim) -> Result<(), SimError> {
    let Some(security) = sim.listener() else { return Ok(()) };
    let Some(mechanism) = security.mechanism else { return Ok(()) };
    let tls = security.tls.then(crate::fake_tls::replayable_client_tls);

    // A wrong password: a typed error, fast, and no retry storm.
    let intruder = sim.add_client(ClientConfig {
        security: Some(security.client("not-the-password", tls.as_ref())),
        ..ClientConfig::default()
    });
    let cmd = sim.issue_on(intruder, Work::Metadata);
    sim.drive_bounded(MAX_STEPS)?;
    let record = sim.record(cmd).cloned();
    match record.as_ref().and_then(|r| r.outcomes.first().map(|(at, e)| (*at - r.issued, e))) {
        Some((took, e))
            if matches!(auth_error(e), Some(AuthError::Failed { .. }))
                || (security.legacy && matches!(auth_error(e), Some(AuthError::ClosedInRawExchange { .. }))) =>
        {
            if took > FAILED_LOGIN_BOUND {
                sim.violate("failed-login-typed", format!("a wrong password failed {cmd} only after {took:?}"));
            }
        }
        other => sim.violate("failed-login-typed", format!("a wrong password ended {cmd} with {other:?}")),
    }
    sim.retire_client(intruder);

    // A hang-up in the middle of a new client's login: it logs in again and is served.
    let api = if sim.below(2) == 0 || security.legacy { ApiKey::SaslHandshake } else { ApiKey::SaslAuthenticate };
    sim.resume_faults();
    let now = sim.now();
    sim.at(now, Action::Inject(Fault::new(FaultAction::Disconnect).on_api(api).times(1)));
    sim.drive(now)?;
    let late = sim.add_client(ClientConfig::default());
    let bound = super::scenario::liveness_bound(sim, late);
    sim.probe("login after a hang-up", late, Work::Metadata, bound);
    sim.drive_bounded(MAX_STEPS)?;
    sim.end_faults();

    // An impostor: SCRAM's server signature forged. The client must refuse the broker.
    if matches!(mechanism, SaslMechanism::Scram(_)) {
        sim.cluster_mut().set_forged_scram_signature(true);
        let victim = sim.add_client(ClientConfig::default());
        let cmd = sim.issue_on(victim, Work::Metadata);
        sim.drive_bounded(MAX_STEPS)?;
        sim.cluster_mut().set_forged_scram_signature(false);
        let trusted = sim.cluster().trusted_forgeries();
        let outcome = sim.record(cmd).and_then(|r| r.outcome()).cloned();
        let refused = outcome.as_ref().and_then(auth_error) == Some(&AuthError::ServerSignature);
        if trusted > 0 || !refused {
            sim.violate(
                "scram-server-signature-checked",
                format!(
                    "{cmd} through a broker with a forged SCRAM signature: {trusted} requests followed it, outcome {outcome:?}"
                ),
            );
        }
        sim.retire_client(victim);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn some_sasl_seeds_draw_a_legacy_listener() {
        let drawn: Vec<SimSecurity> = (0..4_000).filter_map(draw).collect();
        let sasl = drawn.iter().filter(|s| s.mechanism.is_some()).count();
        let legacy = drawn.iter().filter(|s| s.legacy).count();
        assert!(drawn.iter().all(|s| !s.legacy || s.mechanism.is_some()), "legacy only with SASL");
        assert!(legacy * 10 > sasl && legacy * 3 < sasl, "{legacy} of {sasl}");
    }
}
