/// The runs an engine drives, by run ID, with an index of their workflow IDs (at most one open run
/// per workflow ID), so that starting a run checks for a duplicate in constant time.
struct DriverTable {
    private var byRun: [String: RunDriver] = [:]
    private var byWorkflow: [String: String] = [:]

    subscript(runID: String) -> RunDriver? {
        get { byRun[runID] }
        set {
            if let old = byRun[runID], byWorkflow[old.workflowID] == runID { byWorkflow[old.workflowID] = nil }
            byRun[runID] = newValue
            if let newValue { byWorkflow[newValue.workflowID] = runID }
        }
    }

    @discardableResult
    mutating func removeValue(forKey runID: String) -> RunDriver? {
        let driver = byRun[runID]
        self[runID] = nil
        return driver
    }

    /// The run ID of the run driven here with this workflow ID.
    func runID(forWorkflowID workflowID: String) -> String? { byWorkflow[workflowID] }

    var values: Dictionary<String, RunDriver>.Values { byRun.values }

    /// How many runs are driven here.
    var count: Int { byRun.count }

    mutating func removeAll() {
        byRun.removeAll()
        byWorkflow.removeAll()
    }
}
