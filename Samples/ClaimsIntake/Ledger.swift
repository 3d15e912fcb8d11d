import Foundation
import GRDB
import Synchronization

/// The claims ledger: a SQLite file of its own (not the journal), written by the payment steps.
///
/// Each write is idempotent by a key: a reserve by claim, a payment by its idempotency key, a refund
/// by payment, an escalation by the activity's idempotency key. Running a step again (at least once
/// delivery) therefore changes nothing the first run did; `payout_calls` logs every call of `PayOut`
/// so repeats stay visible.
final class Ledger: Sendable {
    let path: String
    /// Opened at the first write, so that commands which never pay (`runs list`) leave no file behind.
    private let opened = Mutex<DatabaseQueue?>(nil)

    init(path: String) {
        self.path = path
    }

    private var queue: DatabaseQueue {
        get throws {
            try opened.withLock { opened in
                if let opened { return opened }
                let queue = try Self.open(path)
                opened = queue
                return queue
            }
        }
    }

    private static func open(_ path: String) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        try queue.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS reserves (
                    claim_id TEXT PRIMARY KEY, amount REAL NOT NULL, status TEXT NOT NULL, updated_at TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS payments (
                    idempotency_key TEXT PRIMARY KEY, payment_id TEXT NOT NULL UNIQUE, claim_id TEXT NOT NULL,
                    amount REAL NOT NULL, payee_iban TEXT NOT NULL, status TEXT NOT NULL,
                    paid_by TEXT NOT NULL, paid_at TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS payout_calls (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT NOT NULL, claim_id TEXT NOT NULL,
                    activity_key TEXT NOT NULL, attempt INTEGER NOT NULL, paid INTEGER NOT NULL,
                    pid INTEGER NOT NULL, at TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS refunds (
                    payment_id TEXT PRIMARY KEY, claim_id TEXT NOT NULL, amount REAL NOT NULL, at TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS escalations (
                    activity_key TEXT PRIMARY KEY, claim_id TEXT NOT NULL, level TEXT NOT NULL,
                    reason TEXT NOT NULL, at TEXT NOT NULL);
                """)
        }
        return queue
    }

    private var now: String { Date().formatted(.iso8601) }

    func reserve(_ request: ReserveRequest) throws {
        try queue.write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO reserves (claim_id, amount, status, updated_at) VALUES (?, ?, 'held', ?)",
                arguments: [request.claimId, request.amount, now])
        }
    }

    func release(_ reserve: Reserve) throws {
        try queue.write { db in
            try db.execute(
                sql: "UPDATE reserves SET status = 'released', updated_at = ? WHERE claim_id = ?",
                arguments: [now, reserve.claimId])
        }
    }

    /// Pays once per idempotency key; a repeat returns the first payment with `duplicate` set.
    func pay(_ request: PaymentRequest, runKey: String, attempt: Int) throws -> Payment {
        try queue.write { db in
            let existing = try Row.fetchOne(
                db, sql: "SELECT payment_id, amount, payee_iban FROM payments WHERE idempotency_key = ?",
                arguments: [request.idempotencyKey])
            try db.execute(
                sql: """
                    INSERT INTO payout_calls (idempotency_key, claim_id, activity_key, attempt, paid, pid, at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [request.idempotencyKey, request.claimId, runKey, attempt, existing == nil, getpid(), now])
            if let existing {
                return Payment(
                    paymentId: existing["payment_id"], claimId: request.claimId, amount: existing["amount"],
                    payeeIBAN: existing["payee_iban"], duplicate: true)
            }
            let paymentId = "PAY-\(request.claimId)"
            try db.execute(
                sql: """
                    INSERT INTO payments (idempotency_key, payment_id, claim_id, amount, payee_iban, status, paid_by, paid_at)
                    VALUES (?, ?, ?, ?, ?, 'paid', ?, ?)
                    """,
                arguments: [request.idempotencyKey, paymentId, request.claimId, request.amount, request.payeeIBAN, runKey, now])
            return Payment(
                paymentId: paymentId, claimId: request.claimId, amount: request.amount, payeeIBAN: request.payeeIBAN,
                duplicate: false)
        }
    }

    func settle(_ payment: Payment) throws {
        try queue.write { db in
            try db.execute(
                sql: "UPDATE payments SET status = 'settled' WHERE payment_id = ? AND status = 'paid'",
                arguments: [payment.paymentId])
            try db.execute(
                sql: "UPDATE reserves SET status = 'spent', updated_at = ? WHERE claim_id = ?",
                arguments: [now, payment.claimId])
        }
    }

    func refund(_ payment: Payment) throws {
        try queue.write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO refunds (payment_id, claim_id, amount, at) VALUES (?, ?, ?, ?)",
                arguments: [payment.paymentId, payment.claimId, payment.amount, now])
            try db.execute(
                sql: "UPDATE payments SET status = 'refunded' WHERE payment_id = ?", arguments: [payment.paymentId])
        }
    }

    func escalate(_ notice: EscalationNotice, key: String) throws {
        try queue.write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO escalations (activity_key, claim_id, level, reason, at) VALUES (?, ?, ?, ?, ?)",
                arguments: [key, notice.claimId, notice.level, notice.reason, now])
        }
    }
}
