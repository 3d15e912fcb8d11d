import Crypto
public import Foundation

/// The model an activity serves: its name, version, the SHA-256 of its weights file(s) and free
/// metadata (a prompt template's hash, a tokenizer version). Every attempt of an activity that serves
/// a model journals it (name, version, ``weightsSHA256``, metadata) with the SHA-256 of the attempt's
/// input and output, so that `durable lineage` answers "which model decided this?" and "which runs
/// did this model version touch?".
///
/// Declare it on the activity type (`ActivityDeclaration.modelIdentity`, read once when the activity
/// is registered); a process-pool worker may also report it in its ready line (`Docs/activities.md`,
/// "Model lineage").
///
/// ```swift
/// struct ScoreFraud: Activity {
///     static let modelIdentity: ModelIdentity? = try! ModelIdentity(
///         name: "fraud", version: "2026.11",
///         weightFiles: ["/models/fraud.onnx"], metadata: ["threshold": "0.8"])
///     func run(_ ctx: ActivityContext, input: Claim) async throws -> Risk { ... }
/// }
/// ```
public struct ModelIdentity: Codable, Sendable, Hashable {
    /// The model's name, e.g. `"fraud"`.
    public var name: String
    /// Its version, e.g. `"2026.11"` (empty when unknown).
    public var version: String
    /// SHA-256 (64 lowercase hex digits) of each weights file, by file name.
    public var weights: [String: String]
    /// Free details that also decide the model's behaviour: a prompt template's hash, a threshold.
    public var metadata: [String: String]

    public init(name: String, version: String, weights: [String: String] = [:], metadata: [String: String] = [:]) {
        self.name = name
        self.version = version
        self.weights = weights
        self.metadata = metadata
    }

    /// A model whose weights are the given files, each hashed now (read in 1 MiB blocks, so a large
    /// file is never held in memory) and recorded under its file name (the last path component).
    ///
    /// - Throws: ``ModelIdentityError`` naming the file when one cannot be read.
    public init(name: String, version: String, weightFiles: [String], metadata: [String: String] = [:]) throws {
        var weights: [String: String] = [:]
        for path in weightFiles {
            weights[URL(fileURLWithPath: path).lastPathComponent] = try Self.sha256(ofFile: path)
        }
        self.init(name: name, version: version, weights: weights, metadata: metadata)
    }

    private enum CodingKeys: String, CodingKey { case name, version, weights, metadata }

    /// Decodes `{"name": …, "version": …, "weights": {file: sha256}, "metadata": {key: value}}`;
    /// only `name` is required (a process's ready line may leave the rest to the declaration).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        version = try container.decodeIfPresent(String.self, forKey: .version) ?? ""
        weights = try container.decodeIfPresent([String: String].self, forKey: .weights) ?? [:]
        metadata = try container.decodeIfPresent([String: String].self, forKey: .metadata) ?? [:]
    }

    /// `name@version` (`name` alone when the version is empty).
    public var label: String { version.isEmpty ? name : "\(name)@\(version)" }

    /// One digest over every weights file: the SHA-256 of the lines `<file name> <sha256>\n`, sorted
    /// by file name; `nil` when no weights are declared. Two identities with the same files and
    /// hashes have the same digest.
    public var weightsSHA256: String? {
        guard !weights.isEmpty else { return nil }
        let lines = weights.keys.sorted().map { "\($0) \(weights[$0] ?? "")\n" }.joined()
        return SHA256.hash(data: Data(lines.utf8)).lowercaseHex
    }

    /// This identity completed by a declared one: a process's report (`self`) wins, but when both name
    /// the same model, the declared weights and metadata it does not report are kept. A report naming
    /// another model stands alone.
    package func combined(withDeclared declared: ModelIdentity?) -> ModelIdentity {
        guard let declared, declared.name == name else { return self }
        var result = self
        if result.version.isEmpty { result.version = declared.version }
        result.weights = declared.weights.merging(weights) { _, reported in reported }
        result.metadata = declared.metadata.merging(metadata) { _, reported in reported }
        return result
    }

    /// The SHA-256 of a file's contents as 64 lowercase hex digits, read in 1 MiB blocks.
    ///
    /// - Throws: ``ModelIdentityError`` naming the file when it is missing or cannot be read.
    public static func sha256(ofFile path: String) throws -> String {
        let handle: FileHandle
        do {
            handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "it cannot be opened (\(error.localizedDescription))"
                : "no such file"
            throw ModelIdentityError(path: path, reason: reason)
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        do {
            while let block = try handle.read(upToCount: 1 << 20), !block.isEmpty {
                hasher.update(data: block)
            }
        } catch {
            throw ModelIdentityError(path: path, reason: "it cannot be read (\(error.localizedDescription))")
        }
        return hasher.finalize().lowercaseHex
    }

    /// The SHA-256 of bytes as 64 lowercase hex digits (what attempts journal for their input and output).
    public static func sha256(of data: Data) -> String {
        SHA256.hash(data: data).lowercaseHex
    }
}

/// A weights file that could not be hashed.
public struct ModelIdentityError: Error, Sendable, CustomStringConvertible {
    /// The file, as given.
    public var path: String
    public var reason: String

    public var description: String { "cannot hash model weights file \(path): \(reason)" }
}
