//! The fail-over section of the report: the faults with their leaders and catch-up times, the
//! cost of each fault's window against the time outside every fault ([`WindowCost`]), what the
//! clients saw in all, and the direct answer to "can clients notice failures?".
//!
//! Caveats:
//!
//! - A fault's window runs from the kill until `AFTER_RESTART_S` after the restart, and a probe
//!   order or a client run counts for every window it overlaps: an order sent just before a
//!   kill waits for the fail-over, and a long client run can count for two faults.
//! - A pause is a longest request more than [`PAUSE_FACTOR`] times the longest outside the
//!   faults: both are single maxima of a loaded machine.

use std::fmt::Write as _;

use crate::driver::HEALTH_CHECK_INTERVAL;
use crate::failover::{
    ClientRun, Failover, Fault, Sample, AFTER_RESTART_S, FAILOVER_CLIENT_REQUESTS, FAILOVER_PROB,
    TIMELINE_PAUSE,
};
use crate::options::{fmt_prob, EvalOptions};

/// How many times the longest request outside the faults a fault's longest must take to be
/// called a pause: both are single maxima of a loaded machine, so a few ms more is noise.
const PAUSE_FACTOR: f64 = 2.0;

/// What one window of the fail-over phase cost the clients and the probe.
#[derive(Clone, Debug, Default, PartialEq)]
struct WindowCost {
    probe_orders: usize,
    probe_failed: usize,
    probe_slowest_ms: f64,
    client_runs: usize,
    client_longest_ms: f64,
    client_retries: u64,
    client_errors: u64,
}

fn window_cost(
    f: &Failover,
    sample_in: &dyn Fn(&Sample) -> bool,
    run_in: &dyn Fn(&ClientRun) -> bool,
) -> WindowCost {
    let mut cost = WindowCost::default();
    for s in f.timeline.iter().filter(|s| sample_in(s)) {
        cost.probe_orders += 1;
        cost.probe_failed += usize::from(!s.ok);
        cost.probe_slowest_ms = cost.probe_slowest_ms.max(s.ms);
    }
    for r in f.runs.iter().filter(|r| run_in(r)) {
        cost.client_runs += 1;
        cost.client_longest_ms = cost.client_longest_ms.max(r.result.longest_ms());
        cost.client_retries += r.result.retries;
        cost.client_errors += r.result.errors + r.result.mismatches;
    }
    cost
}

/// Each fault's cost, and the cost of the time outside every fault's window.
fn fault_costs(f: &Failover) -> (Vec<WindowCost>, WindowCost) {
    let per_fault = f
        .faults
        .iter()
        .map(|fault| {
            let w = fault.window();
            window_cost(f, &|s| s.overlaps(&w), &|r| r.overlaps(&w))
        })
        .collect();
    let outside = |s: &Sample| !f.faults.iter().any(|x| s.overlaps(&x.window()));
    let quiet = window_cost(f, &outside, &|r| {
        !f.faults.iter().any(|x| r.overlaps(&x.window()))
    });
    (per_fault, quiet)
}

/// The fail-over section: the faults, the cost of each window, the totals, the answer.
pub(crate) fn failover_report(md: &mut String, options: &EvalOptions, f: &Failover) {
    faults_table(md, options, f);
    let (costs, quiet) = fault_costs(f);
    windows_table(md, f, &costs, &quiet);
    totals_table(md, f);
    let _ = writeln!(md, "\n### Can clients notice failures?\n");
    for line in failover_answer(f, &costs, &quiet) {
        let _ = writeln!(md, "- {line}");
    }
}

/// What ran, and one row per fault: the leaders, the new leader's delay, the catch-up.
fn faults_table(md: &mut String, options: &EvalOptions, f: &Failover) {
    let _ = writeln!(
        md,
        "{} clients (p = {}) in {} back-to-back `client` runs of {} lookups each, every run \
         reading all its acknowledged orders back, while these faults happened one after the \
         other (health check interval {HEALTH_CHECK_INTERVAL} s; {:.0} s in all):\n",
        options.clients,
        fmt_prob(FAILOVER_PROB),
        f.runs.len(),
        FAILOVER_CLIENT_REQUESTS,
        f.seconds
    );
    let _ = writeln!(
        md,
        "| fault | leader before → after | new leader after | restarted replica caught up after | front-end retries |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    let id = |l: Option<u32>| {
        l.map(|l| format!("order-{l}"))
            .unwrap_or_else(|| "none".into())
    };
    for fault in &f.faults {
        let _ = writeln!(
            md,
            "| {} | {} → {} | {} | {:.0} ms | {} |",
            fault.what,
            id(fault.leader_before),
            id(fault.leader_after),
            fault
                .new_leader_ms
                .map(|ms| format!("{ms:.0} ms"))
                .unwrap_or_else(|| "–".into()),
            fault.catch_up_ms,
            fault
                .frontend_retries
                .map(|r| r.to_string())
                .unwrap_or_else(|| "–".into()),
        );
    }
}

/// The timeline plot, what it shows, and one row per fault's window and one for the rest.
fn windows_table(md: &mut String, f: &Failover, costs: &[WindowCost], quiet: &WindowCost) {
    let _ = writeln!(md, "\n![fail-over timeline](failover.svg)\n");
    let _ = writeln!(
        md,
        "The plot has a log scale, so that orders of a few milliseconds and pauses of seconds are \
         both visible. Blue dots: one probe that placed one order at a time (FishCo, sell and buy \
         in turn, {} ms apart) for the whole phase, {} orders. Green segments: each client run's \
         mean order latency over the run's duration; purple triangles: each run's longest single \
         request, its retries included. The shaded windows run from the kill to the restart. \
         Below, a fault's window runs from the kill until {AFTER_RESTART_S:.0} s after the \
         restart, and a probe order or a client run counts for every window it overlaps (an \
         order sent just before a kill waits for the fail-over).\n",
        TIMELINE_PAUSE.as_millis(),
        f.timeline.len(),
    );
    let _ = writeln!(
        md,
        "| window | probe orders (failed) | slowest probe order | client runs | longest client request | client retries | client errors and mismatches |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let rows = f
        .faults
        .iter()
        .map(|x| x.label)
        .zip(costs)
        .chain([("no fault", quiet)]);
    for (label, c) in rows {
        let _ = writeln!(
            md,
            "| {label} | {} ({}) | {:.0} ms | {} | {:.0} ms | {} | {} |",
            c.probe_orders,
            c.probe_failed,
            c.probe_slowest_ms,
            c.client_runs,
            c.client_longest_ms,
            c.client_retries,
            c.client_errors
        );
    }
}

/// What the clients saw over the whole phase, the probes and the replica files.
fn totals_table(md: &mut String, f: &Failover) {
    let c = f.clients();
    let _ = writeln!(md, "\nWhat the clients saw in all:\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let rows: [(&str, String); 10] = [
        (
            "lookups / orders / order queries",
            format!("{} / {} / {}", c.lookups, c.orders, c.order_queries),
        ),
        (
            "refused orders (409, not enough stock)",
            c.rejected.to_string(),
        ),
        (
            "errors (transport failures, 5xx after the client's retries)",
            c.errors.to_string(),
        ),
        (
            "mismatches (an acknowledged order read back differently or not at all)",
            c.mismatches.to_string(),
        ),
        ("retries by the clients", c.retries.to_string()),
        (
            "retries by the front-end (`/health`)",
            f.frontend_retries.to_string(),
        ),
        (
            "leader changes seen by the front-end (`/health` failovers)",
            f.frontend_failovers.to_string(),
        ),
        (
            "longest single request, retries included (the longest pause)",
            format!("{:.0} ms", f.longest_ms()),
        ),
        (
            "probe orders while two replicas were down: acknowledged / 503 / other",
            format!("{} / {} / {}", f.probes_ok, f.probes_503, f.probes_other),
        ),
        (
            "replica files once quiet (`cmp`)",
            format!(
                "{} ({} orders)",
                if f.identical {
                    "identical"
                } else {
                    "DIFFERENT"
                },
                f.orders_in_log
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {v} |");
    }
}

/// The direct answer: which faults cost what, as errors or as pauses.
fn failover_answer(f: &Failover, costs: &[WindowCost], quiet: &WindowCost) -> Vec<String> {
    let mut out = vec![errors_finding(f, costs, quiet)];
    out.extend(probe_failures(f, costs, quiet));
    for (fault, cost) in f.faults.iter().zip(costs) {
        out.push(fault_finding(fault, cost, quiet));
    }
    out.extend(majority_finding(f));
    out.push(format!(
        "Once quiet, the {} replica files were {} (`cmp`).",
        f.replicas,
        if f.identical {
            "byte-identical"
        } else {
            "NOT identical"
        }
    ));
    out
}

/// Whether the clients saw errors or mismatches, and around which faults.
fn errors_finding(f: &Failover, costs: &[WindowCost], quiet: &WindowCost) -> String {
    let c = f.clients();
    let broken = c.errors + c.mismatches;
    if broken == 0 {
        format!(
            "**Not as errors.** No client saw an error or a wrong answer: 0 errors and 0 \
             mismatches in {} lookups, {} orders and {} order queries. What they can notice is \
             a pause: outside the faults no client request took longer than {:.0} ms and no \
             probe order longer than {:.0} ms.",
            c.lookups, c.orders, c.order_queries, quiet.client_longest_ms, quiet.probe_slowest_ms
        )
    } else {
        let which: Vec<String> = f
            .faults
            .iter()
            .zip(costs)
            .filter(|(_, cost)| cost.client_errors > 0)
            .map(|(x, cost)| format!("{} in the runs around \"{}\"", cost.client_errors, x.label))
            .collect();
        format!(
            "**Yes, as errors.** The clients saw {} errors and {} mismatches{}{}.",
            c.errors,
            c.mismatches,
            if which.is_empty() { "" } else { ": " },
            which.join(", ")
        )
    }
}

/// The timeline probe's failed orders (it does not retry), by fault, if any failed.
fn probe_failures(f: &Failover, costs: &[WindowCost], quiet: &WindowCost) -> Option<String> {
    let probe_failed: Vec<String> = f
        .faults
        .iter()
        .zip(costs)
        .filter(|(_, cost)| cost.probe_failed > 0)
        .map(|(x, cost)| format!("{} around \"{}\"", cost.probe_failed, x.label))
        .collect();
    let probe_failed_total = f.timeline.iter().filter(|s| !s.ok).count();
    if probe_failed_total == 0 {
        return None;
    }
    Some(format!(
        "The one-at-a-time probe, which does not retry, had {probe_failed_total} failed \
         order(s) (an error status or no answer): {}{}.",
        if probe_failed.is_empty() {
            "none of them during a fault".to_string()
        } else {
            probe_failed.join(", ")
        },
        if quiet.probe_failed > 0 {
            format!(", {} outside every fault", quiet.probe_failed)
        } else {
            String::new()
        }
    ))
}

/// What one fault cost: a pause or none, the new leader's delay, retries, errors, probes.
fn fault_finding(fault: &Fault, cost: &WindowCost, quiet: &WindowCost) -> String {
    let longest = cost.client_longest_ms.max(cost.probe_slowest_ms);
    let normal = quiet.client_longest_ms.max(quiet.probe_slowest_ms);
    let verdict = if longest > PAUSE_FACTOR * normal {
        format!(
            "a pause of up to {longest:.0} ms, more than {PAUSE_FACTOR:.0}× the longest \
             outside the faults ({normal:.0} ms)"
        )
    } else {
        format!(
            "no pause beyond the usual: the longest took {longest:.0} ms, against \
             {normal:.0} ms outside the faults"
        )
    };
    let mut text = format!("**{}**: {verdict}", fault.what);
    if let Some(ms) = fault.new_leader_ms {
        let _ = write!(
            text,
            "; the front-end named a new leader {ms:.0} ms after the kill"
        );
    }
    if let Some(r) = fault.frontend_retries {
        let _ = write!(text, "; the front-end retried {r} forwards");
    }
    let _ = write!(
        text,
        "; the clients retried {} requests and saw {} errors; {} of {} probe orders failed.",
        cost.client_retries, cost.client_errors, cost.probe_failed, cost.probe_orders
    );
    text
}

/// With two replicas down, whether any probe order was acknowledged (majority commit).
fn majority_finding(f: &Failover) -> Option<String> {
    if !f.faults.iter().any(|x| x.label == "two replicas down") {
        return None;
    }
    Some(format!(
        "**With two of {} replicas down**, the probe orders sent one at a time were {} \
         acknowledged, {} answered 503 and {} otherwise. docs/spec.md §4 asks for majority \
         commit (503 while fewer than a majority of replicas are up); {}",
        f.replicas,
        f.probes_ok,
        f.probes_503,
        f.probes_other,
        if f.probes_ok > 0 {
            "some were acknowledged with only one live copy, which breaks that rule."
        } else {
            "none was acknowledged by a single copy, as required."
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::failover;

    #[test]
    fn failover_answer_names_pauses_and_errors() {
        let f = failover(0);
        let (costs, quiet) = fault_costs(&f);
        assert_eq!(costs[0].client_runs, 1);
        assert_eq!(costs[0].client_longest_ms, 900.0);
        assert_eq!(quiet.client_runs, 2);
        assert_eq!(quiet.client_longest_ms, 9.0);
        assert_eq!(
            (costs[0].probe_orders, costs[0].probe_slowest_ms),
            (2, 950.0)
        );
        assert_eq!((quiet.probe_orders, quiet.probe_slowest_ms), (1, 4.0));
        let text = failover_answer(&f, &costs, &quiet).join("\n");
        assert!(text.contains("**Not as errors.**"), "{text}");
        assert!(
            text.contains(
                "a pause of up to 950 ms, more than 2× the longest outside the faults (9 ms)"
            ),
            "{text}"
        );
        assert!(text.contains("new leader 800 ms after the kill"), "{text}");
        assert!(text.contains("retried 4 forwards"), "{text}");

        // A fault whose slowest request is barely slower than the quiet time's is no pause.
        let mut calm = failover(0);
        calm.runs[1].result.order_ms.max = 12.0;
        for s in &mut calm.timeline {
            s.ms = 5.0;
        }
        let (costs, quiet) = fault_costs(&calm);
        let text = failover_answer(&calm, &costs, &quiet).join("\n");
        assert!(
            text.contains("no pause beyond the usual: the longest took 12 ms, against 9 ms"),
            "{text}"
        );

        let f = failover(2);
        let (costs, quiet) = fault_costs(&f);
        let text = failover_answer(&f, &costs, &quiet).join("\n");
        assert!(
            text.contains("**Yes, as errors.** The clients saw 2 errors"),
            "{text}"
        );
        assert!(
            text.contains("2 in the runs around \"leader killed\""),
            "{text}"
        );
    }
}
