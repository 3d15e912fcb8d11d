import CoreMetrics

// The engine's metrics, reported through swift-metrics to the factory the worker was given (`metrics:`
// of ``DurableWorker/init(journal:options:metrics:tracer:logger:)``, else the process-wide
// `MetricsSystem.factory`). Each pool's own are in `PoolMetrics.swift`; `Docs/operations.md` says more.
//
// | label | kind | what |
// |---|---|---|
// | `durable_runs_started_total` | counter | runs whose first activation this worker committed |
// | `durable_runs_closed_total` | counter | runs this worker drove to their end, by `outcome` |
// | `durable_runs_held_total` | counter | runs this worker held |
// | `durable_activity_attempts_total` | counter | attempts that ended, by `outcome` |
// | `durable_activity_attempt_seconds` | timer | the activity code's time, per attempt whose code started |
// | `durable_activity_schedule_to_start_seconds` | timer | from an attempt's issue to its code's start |
// | `durable_journal_commit_seconds` | timer | from a batch handed to the journal to its commit |
// | `durable_journal_batch_events` | recorder | events per committed batch (a histogram) |
//
// Dimensions: `workflow_type` for runs, with `outcome` = `completed`, `failed`, `cancelled`,
// `terminated` or `continued_as_new` for closed ones; `activity_type` for attempts, with `outcome` =
// `completed`, `failed`, `timed_out`, `cancelled` or `stopped`; none for the journal. They hold
// registered names and fixed words only, never a run ID, a workflow ID or an error message, so the
// number of series is bounded by the registered types.

/// One workflow type's counters, made when the type is registered (not per run). A class: the
/// registration is copied for every run, and one reference costs one retain where a struct of
/// counters costs one per counter.
final class WorkflowMetrics: Sendable {
    private let started: Counter
    private let completed: Counter
    private let failed: Counter
    private let cancelled: Counter
    private let terminated: Counter
    private let continuedAsNew: Counter
    private let held: Counter

    init(workflowType: String, factory: any MetricsFactory) {
        let type = ("workflow_type", workflowType)
        func closed(_ outcome: String) -> Counter {
            Counter(label: "durable_runs_closed_total", dimensions: [type, ("outcome", outcome)], factory: factory)
        }
        started = Counter(label: "durable_runs_started_total", dimensions: [type], factory: factory)
        completed = closed("completed")
        failed = closed("failed")
        cancelled = closed("cancelled")
        terminated = closed("terminated")
        continuedAsNew = closed("continued_as_new")
        held = Counter(label: "durable_runs_held_total", dimensions: [type], factory: factory)
    }

    /// Counts a run whose first activation was committed.
    func countStart() { started.increment() }

    /// Counts a run that was held.
    func countHold() { held.increment() }

    /// Counts a run that ended.
    func countClose(_ outcome: RunOutcome) {
        switch outcome {
        case .completed: completed.increment()
        case .failed: failed.increment()
        case .cancelled: cancelled.increment()
        case .terminated: terminated.increment()
        case .continuedAsNew: continuedAsNew.increment()
        }
    }
}

/// One activity type's attempt metrics, made when the type is registered (not per attempt), and held
/// by its pool (``PoolMetrics/attempts``).
struct ActivityMetrics: Sendable {
    private let completed: Counter
    private let failed: Counter
    private let timedOut: Counter
    private let cancelled: Counter
    private let stopped: Counter
    private let attemptTime: Timer
    private let scheduleToStart: Timer

    init(activityType: String, factory: any MetricsFactory) {
        let type = ("activity_type", activityType)
        func attempts(_ outcome: String) -> Counter {
            Counter(
                label: "durable_activity_attempts_total", dimensions: [type, ("outcome", outcome)], factory: factory)
        }
        completed = attempts("completed")
        failed = attempts("failed")
        timedOut = attempts("timed_out")
        cancelled = attempts("cancelled")
        stopped = attempts("stopped")
        attemptTime = Timer(label: "durable_activity_attempt_seconds", dimensions: [type], factory: factory)
        scheduleToStart = Timer(
            label: "durable_activity_schedule_to_start_seconds", dimensions: [type], factory: factory)
    }

    /// Records an attempt's code starting, `nanoseconds` after the attempt was issued.
    func started(after nanoseconds: UInt64) {
        scheduleToStart.recordNanoseconds(Int64(clamping: nanoseconds))
    }

    /// Counts an attempt that ended, and records its code's time if it ran.
    func ended(_ ending: AttemptRun.Machine.Ending, runNanos: UInt64?) {
        if let runNanos { attemptTime.recordNanoseconds(Int64(clamping: runNanos)) }
        switch ending {
        case .completed: completed.increment()
        case .failed(.threw): failed.increment()
        case .failed(.timedOut): timedOut.increment()
        case .cancelled: cancelled.increment()
        case .stopped: stopped.increment()
        }
    }

    /// The `outcome` an attempt that ended this way is counted under.
    static func outcome(_ ending: AttemptRun.Machine.Ending) -> String {
        switch ending {
        case .completed: "completed"
        case .failed(.threw): "failed"
        case .failed(.timedOut): "timed_out"
        case .cancelled: "cancelled"
        case .stopped: "stopped"
        }
    }
}

/// The journal's commits as the worker sees them (a class: captured by every batch's completion).
final class JournalMetrics: Sendable {
    private let commit: Timer
    private let batchEvents: Recorder

    init(factory: any MetricsFactory) {
        commit = Timer(label: "durable_journal_commit_seconds", dimensions: [], factory: factory)
        batchEvents = Recorder(label: "durable_journal_batch_events", dimensions: [], aggregate: true, factory: factory)
    }

    /// Records a batch of `events` committed `nanoseconds` after it was handed to the journal.
    func committed(after nanoseconds: UInt64, events: Int) {
        commit.recordNanoseconds(Int64(clamping: nanoseconds))
        batchEvents.record(events)
    }
}
