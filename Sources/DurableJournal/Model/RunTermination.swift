/// Ending an open run from outside (``Journal/terminateRun(_:reason:expected:notice:)``, ``Journal/replaceRun(_:with:events:signals:)``):
/// a compare-and-set on the run's lease, so that a run some worker took meanwhile is left to it.
package struct RunTermination: Sendable {
    package var runID: String
    package var reason: String
    /// The lease the run must still have (as the caller read it).
    package var expected: RunLease
    /// What to tell the run's parent, if it is a child.
    package var notice: RunNotice?

    package init(runID: String, reason: String, expected: RunLease, notice: RunNotice?) {
        self.runID = runID
        self.reason = reason
        self.expected = expected
        self.notice = notice
    }
}
