extension Array where Element == HistoryEvent {
    /// The events a run with this history can be reset to: those that start an activation (an
    /// activity's result, a timer firing, a signal, a cancellation request, a child's outcome), but
    /// not the run's start. The one rule of `DurableWorker.reset` and the console's reset form.
    package var resetPoints: [HistoryEvent] {
        filter { $0.kind.isInput && $0.kind != .workflowStarted }
    }
}
