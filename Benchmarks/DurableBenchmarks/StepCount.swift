import Durable
import Foundation

// MARK: - long_steps: the `long` workflow alone, for counting instructions per step

/// `long`'s workflow of `--long-steps` steps and nothing around it: no journal statistics read back,
/// no history exported. `Scripts/callgrind-step.sh` runs it under `valgrind --tool=callgrind` with N and
/// 2N steps; the difference of the two counts, divided by N, is the engine's instructions per step
/// (start-up, the warm-up workflow and shut-down cancel out).
///
/// A 10-step warm-up workflow runs first, so that the type metadata, conformance look-ups and prepared
/// statements a step needs the first time are not charged to whichever step count comes first.
func runLongSteps(_ s: WorkloadSettings, path: String, durability: Durability, round: Int) async throws -> Record {
    let engine = try await makeEngine(path: path, durability: durability, payloadBytes: s.payloadBytes)
    let warmUp = try await engine.start(Steps.self, input: 10).result()
    guard warmUp == 45 else { throw BenchError("long_steps: wrong warm-up result \(warmUp)") }
    let cpu0 = cpuSeconds()
    let t0 = monoSeconds()
    let result = try await engine.start(Steps.self, input: s.longSteps).result()
    let total = monoSeconds() - t0
    let cpu = cpuSeconds() - cpu0
    guard result == s.longSteps * (s.longSteps - 1) / 2 else { throw BenchError("long_steps: wrong result \(result)") }
    await engine.shutdown()
    removeJournalFiles(path)
    var record = header("long_steps", durability: durability, round: round)
    record.set("steps", s.longSteps)
    record.set("per_step_ms", total / Double(max(1, s.longSteps)) * 1e3)
    record.set("cpu_ms_per_step", cpu / Double(max(1, s.longSteps)) * 1e3)
    emit(record)
    return record
}
