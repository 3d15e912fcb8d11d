import ArgumentParser
import Durable
import Foundation

/// The ranges the options accept, documented in `Docs/cli.md`. Every number an option takes goes
/// through one of the checked parsers below, so that no value out of range reaches an `Int64`
/// conversion (which traps) or the journal.
enum OptionLimits {
    /// The longest age (`--older-than`, `--started-after 30d`): 100 years of 365.25 days.
    static let maximumAge: TimeInterval = 100 * 365.25 * 86_400
    /// How far from now an ISO 8601 time may be (`--started-after 2026-11-29`): 10,000 years.
    static let maximumTimeDistance: TimeInterval = 10_000 * 365.25 * 86_400
    /// `--lease`, in seconds: 0.3 s to one day.
    static let lease: ClosedRange<Double> = 0.3...86_400
    /// `runs list --limit`.
    static let limit: ClosedRange<Int> = 0...1_000_000
    /// `reset --to`: an event index.
    static let eventIndex: ClosedRange<Int> = 0...Int(Int32.max)
    /// `audit list --after`: an audit entry's seq, up to 10^15 (31,000 years of 1,000 entries a second).
    static let auditSeq: ClosedRange<Int> = 0...1_000_000_000_000_000
}

/// Why an option's value was refused; ArgumentParser prints it after "The value '…' is invalid for
/// '--option <value>': " and exits with 64.
struct BadOptionValue: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Checked parsers for option values, for `@Option(transform:)`: each throws a ``BadOptionValue``
/// saying the valid range.
enum OptionValue {
    /// A number of seconds within `range`: finite, written as a decimal number.
    static func seconds(_ text: String, in range: ClosedRange<Double>) throws -> Duration {
        let rangeText = "\(number(range.lowerBound))…\(number(range.upperBound)) seconds"
        guard let value = Double(text) else {
            throw BadOptionValue("not a number of seconds (\(rangeText))")
        }
        guard value.isFinite, range.contains(value) else { throw BadOptionValue("must be \(rangeText)") }
        return .milliseconds(Int64((value * 1000).rounded()))  // at most 86,400,000: no overflow
    }

    /// A whole number within `range`.
    static func integer(_ text: String, in range: ClosedRange<Int>) throws -> Int {
        guard let value = Int(text) else {
            throw BadOptionValue("not a whole number (\(range.lowerBound)…\(range.upperBound))")
        }
        guard range.contains(value) else { throw BadOptionValue("must be \(range.lowerBound)…\(range.upperBound)") }
        return value
    }

    /// An age: `90s`, `30m`, `2h` or `7d`, not negative, at most ``OptionLimits/maximumAge``.
    static func age(_ text: String) throws -> TimeInterval {
        let form = "an age such as 90s, 30m, 2h or 7d (at most 100 years)"
        guard let unit = text.last, let value = Double(text.dropLast()), !text.dropLast().isEmpty,
            let scale: Double = ["s": 1, "m": 60, "h": 3_600, "d": 86_400][unit]
        else { throw BadOptionValue("not \(form)") }
        guard value.isFinite, value >= 0, value * scale <= OptionLimits.maximumAge else {
            throw BadOptionValue("must be \(form)")
        }
        return value * scale
    }

    /// An ISO 8601 time or date, or an age such as `30m` (that long before `now`).
    static func time(_ text: String, now: Date = Date()) throws -> Date {
        let form = "an ISO 8601 time (2026-11-29T09:00:00Z, 2026-11-29) or an age (90s, 30m, 2h, 7d; at most 100 years)"
        if let age = try? age(text) { return now.addingTimeInterval(-age) }
        if let time = HistoryExport.parseTime(text) ?? (try? Date.ISO8601FormatStyle().year().month().day().parse(text)),
            abs(time.timeIntervalSince(now)) <= OptionLimits.maximumTimeDistance
        {
            return time
        }
        throw BadOptionValue("not \(form)")
    }

    /// Comma-separated run statuses, at least one.
    static func statuses(_ text: String) throws -> [RunStatus] {
        let valid = RunStatus.allCases.map(\.rawValue).joined(separator: ", ")
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard !text.isEmpty, parts.allSatisfy({ !$0.isEmpty }) else {
            throw BadOptionValue("give one or more statuses, comma-separated: \(valid)")
        }
        return try parts.map { part in
            guard let status = RunStatus(rawValue: part) else {
                throw BadOptionValue("unknown status '\(part.escaped)'; use one of \(valid)")
            }
            return status
        }
    }

    /// Text that must not be empty (a name, a path, a reason).
    static func nonEmpty(_ text: String) throws -> String {
        guard !text.isEmpty else { throw BadOptionValue("must not be empty") }
        return text
    }

    /// Checks a workflow ID, workflow type or signal name (from `validate()`, so that the message does
    /// not quote a long value): not empty, at most ``DurableLimits/maximumIdentifierBytes`` bytes of UTF-8.
    /// - Parameter name: the option or argument, for the message (`--id`, `<name>`).
    static func checkIdentifier(_ text: String, _ name: String) throws {
        let bytes = text.utf8.count
        guard bytes > 0 else { throw ValidationError("\(name) must not be empty") }
        guard bytes <= DurableLimits.maximumIdentifierBytes else {
            throw ValidationError(
                "\(name) is \(bytes) bytes long; at most \(DurableLimits.maximumIdentifierBytes) bytes of UTF-8 are allowed")
        }
    }

    /// `0.3`, `86400`: a bound without a needless `.0`.
    private static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}
