import Dispatch
import Foundation
import Synchronization

/// Runs callbacks at deadlines on the engine's clock, on one background thread; cancelling is cheap
/// and frees the callback at once.
///
/// Every activity attempt registers its start-to-close timeout here and cancels it when it ends, so
/// both must cost little: a heap push and a dictionary insert, a dictionary removal. Cancelled
/// entries leave a 16-byte heap node behind; the heap is rebuilt when those outnumber the live ones.
final class TimeoutScheduler: Sendable {
    typealias Callback = @Sendable () -> Void

    private struct Node {
        var deadline: UInt64
        var id: Int
    }

    private struct State {
        var heap: [Node] = []
        var callbacks: [Int: Callback] = [:]
        var nextID = 0
        var threadStarted = false
    }

    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    let clock: EngineClock

    init(clock: EngineClock) {
        self.clock = clock
        clock.setIdleHandler { [weak self] in self?.skipToNextDeadline() }
    }

    /// Calls `callback` once `delay` has passed, unless ``cancel(_:)`` comes first.
    func schedule(after delay: Duration, _ callback: @escaping Callback) -> Int {
        let deadline = clock.uptimeNanos() &+ UInt64(max(0, delay.milliseconds)) * 1_000_000
        let (id, signal, start) = state.withLock { state -> (Int, Bool, Bool) in
            state.nextID += 1
            let id = state.nextID
            state.callbacks[id] = callback
            let earliest = state.heap.first?.deadline ?? .max
            Self.push(Node(deadline: deadline, id: id), into: &state.heap)
            let start = !state.threadStarted
            state.threadStarted = true
            return (id, deadline < earliest, start)
        }
        if start {
            let thread = Thread { [self] in run() }
            thread.name = "durable.timeouts"
            thread.start()
        } else if signal {
            wake.signal()
        }
        return id
    }

    /// Calls `callback` when the engine's clock reaches `date` (soon, if it has passed).
    func schedule(at date: Date, _ callback: @escaping Callback) -> Int {
        schedule(after: .milliseconds(Int64((date.timeIntervalSince(clock.now()) * 1000).rounded(.up))), callback)
    }

    func cancel(_ id: Int) {
        state.withLock { state in
            state.callbacks[id] = nil
            if state.heap.count > 1024 && state.heap.count > 2 * state.callbacks.count {
                state.heap.removeAll { state.callbacks[$0.id] == nil }
                state.heap.sort { $0.deadline < $1.deadline }  // a sorted array is a valid min-heap
            }
        }
    }

    private func run() {
        while true {
            let now = clock.uptimeNanos()
            var due: [Callback] = []
            let next: UInt64? = state.withLock { state in
                while let first = state.heap.first, first.deadline <= now {
                    let node = Self.pop(&state.heap)
                    if let callback = state.callbacks.removeValue(forKey: node.id) {
                        clock.beginWork()  // under the lock: a skip sees it
                        due.append(callback)
                    }
                }
                return state.heap.first?.deadline
            }
            // Callbacks may record events and commit: they run elsewhere, so that one slow commit
            // does not hold up every other deadline.
            for callback in due {
                DispatchQueue.global().async { [clock] in
                    callback()
                    clock.endWork()
                }
            }
            if let next {
                _ = wake.wait(timeout: DispatchTime(uptimeNanoseconds: clock.systemUptime(at: next)))
            } else {
                wake.wait()
            }
        }
    }

    enum Skip {
        /// The clock is at the earliest deadline now (it may have been there already).
        case moved
        /// Something is in progress: time does not skip over it.
        case busy
        /// No deadline (within the limit) to skip to.
        case nothingDue
    }

    /// Moves a skipping clock ahead to the earliest deadline (if it is not after `limit`), when
    /// nothing is in progress.
    @discardableResult
    func skipToNextDeadline(notAfter limit: UInt64 = .max) -> Skip {
        let skip = state.withLock { state -> Skip in
            while let first = state.heap.first, state.callbacks[first.id] == nil { _ = Self.pop(&state.heap) }
            guard clock.isIdle else { return .busy }
            guard let next = state.heap.first?.deadline, next <= limit else { return .nothingDue }
            let now = clock.uptimeNanos()
            if next > now { clock.moveAhead(by: next - now) }
            return .moved
        }
        if case .moved = skip { wake.signal() }
        return skip
    }

    private static func push(_ node: Node, into heap: inout [Node]) {
        heap.append(node)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private static func pop(_ heap: inout [Node]) -> Node {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count && heap[left].deadline < heap[smallest].deadline { smallest = left }
                if right < heap.count && heap[right].deadline < heap[smallest].deadline { smallest = right }
                if smallest == parent { break }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return top
    }
}
