import Durable
import DurableCommands
import Foundation

// doc-pipeline: Durable's command tree (submit, runs, history, worker, run, replay) with this
// sample's workflow and activities registered. See Samples/README.md.
//
//   doc-pipeline worker
//   doc-pipeline submit ProcessDocument --id doc-1 --input '{"id":"doc-1","title":"...","text":"..."}'
//   doc-pipeline runs show doc-1

await DurableApp.main(name: "doc-pipeline") { engine in
    engine.register(ProcessDocument.self)
    engine.register(Extract())
    // A warm pool: one slot loaded before work arrives, at most two attempts at once.
    engine.register(Classify.self, pool: .warm(min: 1, max: 2)) { Classify(model: try await .load()) }
    engine.register(Summarize())
    engine.register(DetectLanguage())
    engine.register(ExtractEntities())
    engine.register(Store())
}
