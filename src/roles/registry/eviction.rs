//! When the registry evicts an expired lease: only on time it saw pass while running,
//! and never most of its leases at once before it has suspected itself.
//!
//! Lease deadlines are on the registry's monotonic clock, which runs on while the
//! registry does not: stopped (SIGSTOP, a debugger), starved of CPU, or in a virtual
//! machine that was paused or migrated (a jump of the clock). The instances renewed all
//! along but could not reach it, so on resume every lease would look expired. The
//! [`EvictionGuard`] notes the clock at every check of the evictor (at least every TTL/10)
//! and on every change; a gap longer than TTL/4 is a **stall**, time the registry did not
//! see pass, and every lease then gets one TTL of grace from the resume, as after a
//! restart. The instances renew into it. Why TTL/4: an instance renews at least every
//! TTL/2 (the config refuses a longer interval), so a live one has TTL/2 of slack, and a
//! shorter gap cannot by itself make it miss its lease; and TTL/4 is well above the
//! evictor's period, so scheduling jitter is not taken for a stall.
//!
//! **Self-preservation.** When more than half of the leases, and at least
//! [`MASS_EXPIRY_MIN`], expire in one check, the registry suspects itself first: its own
//! network cut, or a stall it could not see, is likelier than most of the cluster dying
//! in the same instant, and evicting them all would empty every caller's view. It holds
//! every lease one TTL more. Those still silent at its end are evicted: a mass expiry
//! within two TTLs of the last grace (after a restart, a stall or a suspicion) is
//! believed. Eureka stops evicting for as long as renewals stay low; svc doubts once, so
//! a real mass failure costs one TTL more in the views (callers' breakers eject the dead
//! meanwhile) and no dead instance is listed for ever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use svc_platform::clock::now_ms;
use svc_platform::shutdown::Shutdown;

use super::lease_table::{Change, LeaseTable};
use super::RegistryState;

/// The fewest leases expiring in one check that make the registry suspect itself: one
/// or two instances dying together is ordinary.
pub const MASS_EXPIRY_MIN: usize = 3;

/// A mass expiry this many TTLs after the last grace is believed (see the module docs).
const BELIEVED_WITHIN_TTLS: u32 = 2;

/// Time the registry did not see pass: it ran again after `unseen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    pub unseen: Duration,
}

/// What one check of the leases decided.
#[derive(Debug)]
pub enum Verdict {
    /// No lease has expired.
    NothingExpired,
    /// The expired leases were removed: the change to persist.
    Evicted(Change),
    /// Most leases expired at once: every lease is held one TTL more, none evicted.
    SuspectedItself { expired: usize, leases: usize },
}

/// The registry's memory of its own clock: when it last saw it, and when it last gave
/// leases grace. Kept under the table's lock, beside the [`LeaseTable`].
#[derive(Debug)]
pub struct EvictionGuard {
    ttl: Duration,
    /// A gap between two looks at the clock longer than this is a stall.
    stall_after: Duration,
    last_seen: Instant,
    last_grace: Option<Instant>,
}

impl EvictionGuard {
    /// A guard for leases of `ttl`, at `now`; `restored`: the table came back from the
    /// file with one TTL of grace (which counts as the last grace).
    pub fn new(ttl: Duration, now: Instant, restored: bool) -> EvictionGuard {
        EvictionGuard {
            ttl,
            stall_after: ttl / 4,
            last_seen: now,
            last_grace: restored.then_some(now),
        }
    }

    /// Notes the clock at `now`. After a stall, every lease of `table` gets one TTL of
    /// grace from `now`, and the stall is returned.
    pub fn observe(&mut self, table: &mut LeaseTable, now: Instant) -> Option<Stall> {
        let gap = now.saturating_duration_since(self.last_seen);
        self.last_seen = self.last_seen.max(now);
        if gap <= self.stall_after {
            return None;
        }
        self.grant_grace(table, now);
        Some(Stall { unseen: gap })
    }

    /// The evictor's check at `now`: first [`EvictionGuard::observe`], then what expired.
    pub fn check(&mut self, table: &mut LeaseTable, now: Instant) -> (Option<Stall>, Verdict) {
        let stall = self.observe(table, now);
        let expired = table.iter().filter(|(_, l)| l.expires <= now).count();
        if expired == 0 {
            return (stall, Verdict::NothingExpired);
        }
        let leases = table.instance_count();
        let mass = expired >= MASS_EXPIRY_MIN && expired * 2 > leases;
        let believed = self
            .last_grace
            .is_some_and(|at| now.saturating_duration_since(at) < self.ttl * BELIEVED_WITHIN_TTLS);
        if mass && !believed {
            self.grant_grace(table, now);
            return (stall, Verdict::SuspectedItself { expired, leases });
        }
        let verdict = table
            .evict_expired(now)
            .map_or(Verdict::NothingExpired, Verdict::Evicted);
        (stall, verdict)
    }

    /// Every lease lasts at least one TTL from `now`.
    fn grant_grace(&mut self, table: &mut LeaseTable, now: Instant) {
        let until = now + self.ttl;
        for lease in table.leases_mut() {
            lease.expires = lease.expires.max(until);
        }
        self.last_grace = Some(now);
    }
}

/// Logs a stall that [`EvictionGuard::observe`] found.
pub fn log_stall(stall: Stall, ttl: Duration) {
    tracing::warn!(
        unseen_ms = stall.unseen.as_millis() as u64,
        grace = %humantime::format_duration(ttl),
        "the registry did not run for a while (stopped, starved or its clock jumped); \
         that time counts against no lease: each gets one TTL of grace"
    );
}

/// Checks leases often enough that an eviction is late by at most a small slice of TTL.
pub fn spawn_evictor(state: Arc<RegistryState>, shutdown: Shutdown) {
    let ttl = state.settings.lease_ttl;
    let period = (ttl / 10).clamp(Duration::from_millis(20), Duration::from_millis(250));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            let applied = state.change_guarded(|table, guard| {
                let (stall, verdict) = guard.check(table, Instant::now());
                let change = match &verdict {
                    Verdict::Evicted(change) => Some(change.clone()),
                    _ => None,
                };
                ((stall, verdict), change)
            });
            let (stall, verdict) = &applied.out;
            if let Some(stall) = stall {
                log_stall(*stall, ttl);
            }
            let evicted = match verdict {
                Verdict::NothingExpired => continue,
                Verdict::SuspectedItself { expired, leases } => {
                    tracing::warn!(
                        expired,
                        leases,
                        grace = %humantime::format_duration(ttl),
                        "most leases expired at once; suspecting the registry itself, \
                         they are held one TTL more and removed only if still silent then"
                    );
                    continue;
                }
                Verdict::Evicted(change) => change.clone(),
            };
            match applied.durable(&state).await {
                Ok(_) => log_evicted(&evicted),
                Err(e) => {
                    tracing::error!(error = %e, "could not persist evictions; will retry")
                }
            }
        }
    });
}

/// One line per evicted instance. Its role and id are `instance_role` / `instance_id`:
/// `role` and `instance` of every line name the process that writes it.
fn log_evicted(evicted: &Change) {
    for row in &evicted.rows {
        let Some(lease) = &row.before else { continue };
        let silent_ms = now_ms().saturating_sub(lease.renewed_at_ms);
        tracing::warn!(
            instance_role = %row.role,
            instance_id = %row.instance_id,
            silent_ms,
            "lease expired; instance evicted"
        );
    }
}

#[cfg(test)]
mod tests {
    use svc_platform::registry_api::Registration;

    use super::*;

    const TTL: Duration = Duration::from_secs(1);
    /// The evictor's period for [`TTL`].
    const TICK: Duration = Duration::from_millis(100);

    fn table(ids: &[&str], now: Instant) -> LeaseTable {
        let mut table = LeaseTable::new(TTL);
        for id in ids {
            let reg = Registration {
                role: "orders".into(),
                instance_id: id.to_string(),
                address: format!("https://{id}:1"),
                version: "1".into(),
                metadata: Default::default(),
            };
            table.register(reg, now, 0).unwrap();
        }
        table
    }

    /// Checks every [`TICK`] from `from` for `ticks` ticks, `renewing` renewing at each;
    /// returns every verdict but "nothing expired", with its time, and the time after.
    fn run(
        guard: &mut EvictionGuard,
        table: &mut LeaseTable,
        from: Instant,
        ticks: u32,
        renewing: &[&str],
    ) -> (Vec<(Instant, Verdict)>, Instant) {
        let mut verdicts = Vec::new();
        let mut now = from;
        for _ in 0..ticks {
            now += TICK;
            for id in renewing {
                table.renew("orders", id, now, 0);
            }
            let (stall, verdict) = guard.check(table, now);
            assert_eq!(stall, None, "no stall while ticking");
            if !matches!(verdict, Verdict::NothingExpired) {
                verdicts.push((now, verdict));
            }
        }
        (verdicts, now)
    }

    fn evicted_ids(verdict: &Verdict) -> Vec<String> {
        match verdict {
            Verdict::Evicted(change) => change
                .rows
                .iter()
                .map(|r| r.instance_id.to_string())
                .collect(),
            other => panic!("expected an eviction, got {other:?}"),
        }
    }

    #[test]
    fn after_a_stall_no_lease_is_evicted_and_the_instances_renew_into_their_grace() {
        let start = Instant::now();
        let ids = ["a", "b", "c", "d"];
        let mut table = table(&ids, start);
        let mut guard = EvictionGuard::new(TTL, start, false);
        let (verdicts, now) = run(&mut guard, &mut table, start, 10, &ids);
        assert!(verdicts.is_empty());

        // Stopped for a minute: every lease is long past its deadline on resume.
        let resumed = now + Duration::from_secs(60);
        let (stall, verdict) = guard.check(&mut table, resumed);
        assert_eq!(
            stall,
            Some(Stall {
                unseen: Duration::from_secs(60)
            })
        );
        assert!(matches!(verdict, Verdict::NothingExpired), "{verdict:?}");
        assert_eq!(table.instance_count(), 4);
        let index = table.index();

        // They renew again, as they do every tick from now on; nobody is evicted.
        let (verdicts, _) = run(&mut guard, &mut table, resumed, 30, &ids);
        assert!(verdicts.is_empty(), "{verdicts:?}");
        assert_eq!((table.instance_count(), table.index()), (4, index));
    }

    #[test]
    fn a_lease_not_renewed_after_a_stall_expires_one_ttl_after_the_resume() {
        let start = Instant::now();
        let mut table = table(&["a", "b", "c"], start);
        let mut guard = EvictionGuard::new(TTL, start, false);
        let resumed = start + Duration::from_secs(60);
        assert!(guard.check(&mut table, resumed).0.is_some());
        let (verdicts, _) = run(&mut guard, &mut table, resumed, 15, &["a", "b"]);
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        let (at, verdict) = &verdicts[0];
        assert_eq!(*at, resumed + TTL);
        assert_eq!(evicted_ids(verdict), ["c"]);
    }

    #[test]
    fn gaps_of_scheduling_jitter_are_no_stall_and_a_silent_lease_is_evicted_on_time() {
        let start = Instant::now();
        let mut table = table(&["a", "b", "c"], start);
        let mut guard = EvictionGuard::new(TTL, start, false);
        // A late tick (TTL/4 exactly) is not a stall.
        let late = start + TTL / 4;
        table.renew("orders", "a", late, 0);
        table.renew("orders", "b", late, 0);
        assert_eq!(guard.check(&mut table, late).0, None);
        let (verdicts, _) = run(&mut guard, &mut table, late, 10, &["a", "b"]);
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        // At the first check past its deadline (the ticks run from `late`).
        assert_eq!(verdicts[0].0, start + TTL + TICK / 2);
        assert_eq!(evicted_ids(&verdicts[0].1), ["c"]);
    }

    #[test]
    fn most_leases_expiring_at_once_are_held_one_ttl_then_evicted_if_still_silent() {
        let start = Instant::now();
        let mut table = table(&["a", "b", "c", "d"], start);
        let mut guard = EvictionGuard::new(TTL, start, false);
        // Only `a` renews: three of four expire in the same check.
        let (verdicts, _) = run(&mut guard, &mut table, start, 25, &["a"]);
        assert_eq!(verdicts.len(), 2, "{verdicts:?}");
        let (suspected_at, suspected) = &verdicts[0];
        assert_eq!(*suspected_at, start + TTL);
        assert!(
            matches!(
                suspected,
                Verdict::SuspectedItself {
                    expired: 3,
                    leases: 4
                }
            ),
            "{suspected:?}"
        );
        let (evicted_at, evicted) = &verdicts[1];
        assert_eq!(*evicted_at, start + TTL * 2);
        assert_eq!(evicted_ids(evicted), ["b", "c", "d"]);
        assert_eq!(table.instance_count(), 1);
    }

    #[test]
    fn held_leases_that_renew_are_kept() {
        let start = Instant::now();
        let mut table = table(&["a", "b", "c"], start);
        let mut guard = EvictionGuard::new(TTL, start, false);
        let (verdicts, now) = run(&mut guard, &mut table, start, 10, &[]);
        assert!(matches!(
            verdicts[..],
            [(_, Verdict::SuspectedItself { expired: 3, .. })]
        ));
        let (verdicts, _) = run(&mut guard, &mut table, now, 30, &["a", "b", "c"]);
        assert!(verdicts.is_empty(), "{verdicts:?}");
        assert_eq!(table.instance_count(), 3);
    }

    #[test]
    fn a_mass_expiry_soon_after_a_restart_is_believed() {
        let start = Instant::now();
        let mut table = table(&["a", "b", "c"], start);
        // Restored at `start`: the restart's grace was the doubt.
        let mut guard = EvictionGuard::new(TTL, start, true);
        let (verdicts, _) = run(&mut guard, &mut table, start, 10, &[]);
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        assert_eq!(evicted_ids(&verdicts[0].1), ["a", "b", "c"]);
    }

    #[test]
    fn a_few_instances_dying_together_are_evicted_at_once() {
        let start = Instant::now();
        let mut table = table(&["a", "b"], start);
        let mut guard = EvictionGuard::new(TTL, start, false);
        let (verdicts, _) = run(&mut guard, &mut table, start, 10, &[]);
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        assert_eq!(evicted_ids(&verdicts[0].1), ["a", "b"]);
    }
}
