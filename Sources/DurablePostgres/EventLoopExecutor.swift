import NIOCore

/// Runs a task's jobs on one NIO event loop: the loop the journal's connections live on. A task that
/// prefers it (`Task(executorPreference:)`) sends its queries and resumes from their answers on the
/// loop's own thread, with no hand-over to and from the cooperative pool around every statement.
final class EventLoopExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
