import Foundation
import DurableJournal
import Synchronization

extension DurableWorker {
    /// Hands the queued signals of runs driven here to their runs, each once: a run's mailbox takes
    /// a signal only if it is newer than the last it took (a signal whose delivery failed is taken
    /// again by the run's next driver). Runs no live worker drives (held ones) are terminated here
    /// directly.
    package func deliverSignals() async {
        let terminate = SystemSignal.terminate
        // Signals of runs not driven here: perhaps of waiting runs evicted from memory, woken below.
        let undriven = Mutex(false)
        // The drivers of the runs with queued signals, looked up one by one (not a copy of the table).
        let found = Mutex<[String: RunDriver]>([:])
        let queued = try? await journal.queuedSignals(including: { [self] runID, name in
            if let driver = drivers.withLock({ $0[runID] }) {
                found.withLock { $0[runID] = driver }
                return true
            }
            if name != terminate { undriven.withLock { $0 = true } }
            return name == terminate
        })
        let driven = found.withLock { $0 }
        if undriven.withLock({ $0 }), await wakeSignalledRuns() {
            await deliverSignals()  // to the runs just woken
            return
        }
        guard let queued, !queued.isEmpty else { return }
        var terminatedHere = false
        var refused: [RunDriver] = []
        for signal in queued {
            let driver = driven[signal.runID]
            if driver == nil, signal.name == SystemSignal.terminate,
                let run = try? await journal.findRun(signal.runID), run.status.isOpen, client.leaseIsFree(run)
            {
                let reason = signal.data.map { String(decoding: $0, as: UTF8.self) } ?? ""
                if (try? await client.terminateUndriven(run, reason: reason)) == true { terminatedHere = true }
                continue
            }
            guard let driver else { continue }
            let accepted: Bool
            switch signal.name {
            case SystemSignal.terminate:
                accepted = driver.post(.terminate(signal.data.map { String(decoding: $0, as: UTF8.self) } ?? "", queued: signal.id))
            case SystemSignal.child:
                let seq = signal.data.flatMap { try? JSONDecoder().decode(ChildOutcome.self, from: $0) }?.seq ?? 0
                let event = HistoryEvent(index: 0, kind: .childClosed, time: clock.now(), seq: seq, data: signal.data)
                accepted = driver.post(.signal(event, queued: signal.id))
            case SystemSignal.cancel:
                let event = HistoryEvent(index: 0, kind: .workflowCancelRequested, time: clock.now(), data: signal.data)
                accepted = driver.post(.signal(event, queued: signal.id))
            default:
                let event = HistoryEvent(index: 0, kind: .signalReceived, time: clock.now(), name: signal.name, data: signal.data)
                accepted = driver.post(.signal(event, queued: signal.id))
            }
            if !accepted && driver.isClosed { refused.append(driver) }
        }
        // A run evicted meanwhile (its mailbox closed, then its driver gone): its signal is still queued,
        // and a pass now wakes it. (One still in the table is looked at again when its eviction is done.)
        if refused.contains(where: { driver in drivers.withLock { $0[driver.runID] !== driver } }) {
            await deliverSignals()
            return
        }
        if terminatedHere { await deliverSignals() }  // a terminated child's parent has news
    }
}
