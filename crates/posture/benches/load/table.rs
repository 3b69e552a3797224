//! The report as Markdown, ready for the README: the wrk scenarios, the scan
//! spike, the ingestion rows and the reference stack beside Posture.

use crate::reference::ReferenceRun;
use crate::spike::SpikeResult;
use crate::{ingest_rows, Report};

/// Prints every table the run has figures for.
pub fn print_markdown(report: &Report) {
    println!(
        "\n{} on {} CPUs ({}), {} MiB, PostgreSQL {}, {}; wrk -t{} -c{} -d{}s (warm-up {} s)\n",
        report.date,
        report.machine.cpus,
        report.machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
        report.machine.memory_mib.unwrap_or(0),
        report.machine.postgres,
        report.machine.wrk,
        report.settings.threads,
        report.settings.connections,
        report.settings.seconds,
        report.settings.warm_up,
    );
    println!("| scenario | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | errors | of hello | CPU server | CPU postgres | CPU redis | steal |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for result in &report.scenarios {
        let load = &result.load;
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            result.name,
            load.requests,
            load.requests_per_second,
            load.p50_ms,
            load.p90_ms,
            load.p99_ms,
            load.max_ms,
            load.non_2xx,
            load.socket_errors,
            result
                .of_hello
                .zip(result.hello_beside)
                .map_or("—".to_owned(), |(share, hello)| {
                    format!("{:.0} % of {hello:.0}", share * 100.0)
                }),
            result.cpu.server,
            result.cpu.postgres,
            result.cpu.redis,
            result.cpu.steal,
        );
    }
    let seeded = &report.seeded;
    let tiers: Vec<String> = seeded
        .tiers
        .iter()
        .map(|(tier, count)| format!("{count} {tier}"))
        .collect();
    println!(
        "\nSeeded: {} tenants of mixed tiers ({}): {} enterprise load tenants (a read key each), one free \
         tenant for the 429 path, {} free/basic/premium tenants no scenario loads; {} findings. Server \
         peak RSS: {}. CPU in cores (2 = the whole machine); the hello row's \"server\" is the hello process; \
         \"steal\": cores' worth of time the hypervisor gave other guests meanwhile (a run with much of it \
         measured a busy host, not the code). \
         \"of hello\": the share of the bare hello's req/s measured just before the scenario (the hello row is \
         the first of these, alone on the machine before the server started).",
        seeded.tenants,
        tiers.join(", "),
        report.settings.tenants,
        report.settings.other_tenants,
        seeded.findings,
        report
            .server_peak_rss_mib
            .map_or("unknown".to_owned(), |mib| format!("{mib:.0} MiB")),
    );
    print_refusals(report);
    if let Some(spike) = &report.spike {
        print_spike(spike);
    }
    if let Some(ingestion) = &report.ingestion {
        ingest_rows::print_markdown(ingestion);
    }
    if let Some(reference) = &report.reference {
        print_reference(report, reference);
    }
}

/// Warns about scenarios that should have been answered 2xx and were not:
/// usually rate limits, when too few tenants share the load (each may make
/// 1,000 requests a minute), so the figures are refusals' and not reads'.
fn print_refusals(report: &Report) {
    for result in &report.scenarios {
        let load = &result.load;
        if result.name.starts_with("429 path") || load.non_2xx + load.socket_errors == 0 {
            continue;
        }
        println!(
            "\n**WARNING**: {}: {} of {} answers were not 2xx and {} requests failed: its figures are \
             not those of the read. Rate limits are on and an enterprise tenant may make 1,000 requests \
             a minute: at {:.0} req/s over {} load tenants, each made about {:.0} in this scenario alone; \
             use more tenants (--tenants) or shorter runs.",
            result.name,
            load.non_2xx,
            load.requests,
            load.socket_errors,
            load.requests_per_second,
            report.settings.tenants,
            load.requests as f64 / report.settings.tenants.max(1) as f64,
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn print_spike(spike: &SpikeResult) {
    println!(
        "\n**Scan spike**: {} native reports of {} findings (full scans; 80 % of an asset's findings \
         carried from one scan to the next) from {} tenants, {} submissions in flight, with an \
         Idempotency-Key each; meanwhile cached reads (GET /v1/posture, keys rotating over the load \
         tenants) at a fixed {}/s, latency from the scheduled send time:\n",
        spike.scans, spike.findings_per_scan, spike.tenants, spike.concurrency, spike.read_rate
    );
    println!("| submitted in s | all processed in s | scans/s | findings/s | new | unchanged | resolved | rejected | failed | read p99 before ms | read p99 during ms | read errors | CPU server | CPU postgres | CPU redis | steal |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let during = &spike.reads_during;
    println!(
        "| {:.2} | **{:.2}**{} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.2} | **{:.2}** | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
        spike.submit_s,
        spike.processed_s,
        if spike.all_processed { "" } else { " (gave up)" },
        spike.scans_per_second,
        spike.findings_per_second,
        spike.new,
        spike.unchanged,
        spike.resolved,
        spike.rejected,
        spike.failed,
        spike.reads_before.p99_ms,
        during.p99_ms,
        during.non_2xx + during.socket_errors,
        spike.cpu.server,
        spike.cpu.postgres,
        spike.cpu.redis,
        spike.cpu.steal,
    );
    println!(
        "\nTargets: all processed within 20 s: {}; cached-read p99 during the spike ≤ 50 ms: {}; zero errors: {}. \
         Processing time is polled every 50 ms; \"before\" is the reads' {} s alone before the first submission; \
         of the read latency, the generator's own lateness (scheduled → sent, on the same 2 cores) had a p99 of {:.2} ms.",
        verdict(spike.processed_within_target),
        verdict(spike.read_p99_within_target),
        verdict(spike.zero_errors),
        spike.reads_before.duration_s.round(),
        spike.read_send_lag_p99_ms,
    );
    if !spike.rejected_statuses.is_empty() {
        println!(
            "Rejected submissions by status: {:?}; first: {:?}",
            spike.rejected_statuses, spike.rejected_examples
        );
    }
    if !spike.failed_examples.is_empty() {
        println!("Failed scans, first errors: {:?}", spike.failed_examples);
    }
}

fn print_reference(report: &Report, reference: &ReferenceRun) {
    println!(
        "\n**The stack we replace** (FastAPI + SQLAlchemy/asyncpg + Redis under uvicorn, 2 workers; \
         {}; its own data: 100 tenants × 2,000 findings), run first in the same run with the same wrk \
         settings:\n",
        reference.source.display()
    );
    println!("| scenario | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | errors | CPU app | CPU postgres | CPU redis | CPU other |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for scenario in &reference.scenarios {
        let load = &scenario.load;
        println!(
            "| {} `{}` | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            scenario.name,
            scenario.path,
            load.requests,
            load.requests_per_second,
            load.p50_ms,
            load.p90_ms,
            load.p99_ms,
            load.max_ms,
            load.non_2xx,
            load.socket_errors,
            scenario.cpu.app,
            scenario.cpu.postgres,
            scenario.cpu.redis,
            scenario.cpu.other,
        );
    }
    if report.comparisons.is_empty() {
        return;
    }
    println!("\n| Posture | reference | Posture req/s | reference req/s | throughput × | Posture p99 ms | reference p99 ms | p99 shorter × |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for comparison in &report.comparisons {
        println!(
            "| {}{} | {} | {:.0} | {:.0} | **{:.1}** | {:.2} | {:.2} | **{:.1}** |",
            comparison.posture,
            if comparison.valid {
                ""
            } else {
                " (**not comparable**: non-2xx answers or errors)"
            },
            comparison.reference,
            comparison.posture_rps,
            comparison.reference_rps,
            comparison.throughput_ratio,
            comparison.posture_p99_ms,
            comparison.reference_p99_ms,
            comparison.p99_ratio,
        );
    }
    println!(
        "\nThroughput × = Posture's req/s ÷ the reference's; p99 shorter × = the reference's p99 ÷ \
         Posture's. The reference's \"CPU other\" is busy CPU outside its app, PostgreSQL, Redis and \
         wrk (another session's work; its run.sh repeats a run with more than 0.2)."
    );
}
