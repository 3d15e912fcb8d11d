/// What an operator can do to a run from the console.
enum ConsoleAction: String, CaseIterable, Sendable {
    case signal, cancel, terminate, reset

    var verb: String {
        switch self {
        case .signal: "Send the signal"
        case .cancel: "Cancel the run"
        case .terminate: "Terminate the run"
        case .reset: "Reset the run"
        }
    }

    var done: String {
        switch self {
        case .signal: "The signal was sent."
        case .cancel: "Cancellation was requested: the workflow's code decides how it ends."
        case .terminate: "Termination was requested: the run ends without running more of its code."
        case .reset: "The run was reset: this is the new run, which replays the history before the reset point."
        }
    }
}
