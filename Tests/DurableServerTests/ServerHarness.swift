import DurableServer
import DurableTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real `serve` process on a loopback port (the test worker application, with its workflows, or
/// the code-less `durable`), with one token per role, and an HTTP client for it.
final class ServerProcess: Sendable {
    let child: Child
    let address: String
    let journal: String
    /// The token of each role, and one whose hash is in no file.
    let tokens: [Role: String]
    /// The token file the server reads (`--auth`), and what it holds.
    let tokenPath: String
    let tokenFile: TokenFile
    static let unknownToken = "dur_not-a-token-of-this-server"

    /// Starts `executable serve` and waits until it prints the address it listens on.
    init(
        codeless: Bool = false, worker: Bool = true, events: [String: Any]? = nil, arguments: [String] = [],
        journal: String = temporaryJournal("server"), environment: [String: String] = [:]
    ) async throws {
        var file = TokenFile()
        var tokens: [Role: String] = [:]
        for role in Role.allCases {
            let added = try file.adding(name: "\(role.rawValue)-token", role: role)
            (tokens[role], file) = (added.token, added.file)
        }
        let tokenPath = temporaryPath("tokens") + ".json"
        try JSONEncoder().encode(file).write(to: URL(fileURLWithPath: tokenPath))
        var serveArguments = ["serve", "--port", "0", "--journal", journal, "--auth", tokenPath] + arguments
        if let events {
            let path = temporaryPath("events") + ".json"
            try JSONSerialization.data(withJSONObject: events).write(to: URL(fileURLWithPath: path))
            serveArguments += ["--events", path]
        }
        if worker && !codeless { serveArguments.append("--worker") }
        let child = try Child(
            try productPath(codeless ? "durable" : "durable-test-worker"), serveArguments,
            environment: ["STEP_MS": "5"].merging(environment) { $1 })
        var address: String?
        try await eventually("the server printing its address", timeout: .seconds(30)) {
            if !child.process.isRunning { throw TestProcessError("serve exited early:\n\(child.output)") }
            address = child.output.split(separator: "\n").first { $0.hasPrefix("serving http://") }
                .map { String($0.dropFirst("serving http://".count).prefix { $0 != " " }) }
            return address != nil
        }
        self.child = child
        self.address = address!
        self.journal = journal
        self.tokens = tokens
        self.tokenPath = tokenPath
        self.tokenFile = file
    }

    /// Replaces the token file as `auth` does: a temporary file renamed over it.
    func replaceTokenFile(with file: TokenFile) throws {
        let temporary = tokenPath + ".new"
        try JSONEncoder().encode(file).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, tokenPath) == 0 else { throw TestProcessError("rename to \(tokenPath): \(errno)") }
    }

    deinit { child.kill(SIGKILL) }

    /// Stops the server with SIGTERM and returns its exit status.
    func stop() async throws -> Int32 {
        child.kill(SIGTERM)
        return try await child.wait(timeout: .seconds(20)).status
    }

    struct Reply: Sendable {
        var status: Int
        var headers: [String: String]
        var body: Data

        var text: String { String(decoding: body, as: UTF8.self) }
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
        func header(_ name: String) -> String? {
            headers.first { $0.key.lowercased() == name.lowercased() }?.value
        }
    }

    /// Sends a request; `role` picks the token (none when `nil`, `token` overrides it).
    func request(
        _ method: String, _ path: String, role: Role? = .admin, token: String? = nil, json: Any? = nil,
        body: Data? = nil, headers: [String: String] = [:], timeout: TimeInterval = 30
    ) async throws -> Reply {
        var request = URLRequest(url: URL(string: "http://\(address)\(path)")!, timeoutInterval: timeout)
        request.httpMethod = method
        if let bearer = token ?? role.flatMap({ tokens[$0] }) {
            request.setValue("Bearer \(bearer)", forHTTPHeaderField: "Authorization")
        }
        if let json {
            request.httpBody = try JSONSerialization.data(withJSONObject: json, options: [.fragmentsAllowed])
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        } else if let body {
            request.httpBody = body
        }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let session = URLSession(configuration: .ephemeral)
        defer { session.finishTasksAndInvalidate() }
        let (data, response) = try await session.data(for: request)
        let http = response as! HTTPURLResponse
        var fields: [String: String] = [:]
        for (key, value) in http.allHeaderFields { fields["\(key)"] = "\(value)" }
        return Reply(status: http.statusCode, headers: fields, body: data)
    }

    /// Starts a run and returns its run ID.
    func start(_ type: String, input: Any, workflowID: String? = nil) async throws -> String {
        var body: [String: Any] = ["input": input]
        if let workflowID { body["workflowID"] = workflowID }
        let reply = try await request("POST", "/v1/workflows/\(type)/runs", role: .submitter, json: body)
        guard reply.status == 202, let runID = reply.json["runID"] as? String else {
            throw TestProcessError("start \(type): \(reply.status) \(reply.text)")
        }
        return runID
    }
}
