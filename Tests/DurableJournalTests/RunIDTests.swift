import DurableJournal
import Foundation
import Testing

@Suite struct RunIDTests {
    @Test func newRunIDsAreLowercaseVersion4UUIDsAndDiffer() throws {
        let ids = (0..<1_000).map { _ in RunRecord.newRunID() }
        #expect(Set(ids).count == ids.count)
        for id in ids.prefix(50) {
            let uuid = try #require(UUID(uuidString: id), "\(id) is a UUID")
            #expect(uuid.uuidString.lowercased() == id, "lowercase, the canonical 8-4-4-4-12 form")
            #expect(uuid.uuid.6 >> 4 == 4, "version 4: \(id)")
            #expect(uuid.uuid.8 >> 6 == 0b10, "the RFC 9562 variant: \(id)")
        }
        // Every hex digit appears in each random position over many IDs (no byte stuck).
        let digits = Set(ids.flatMap { Array($0.prefix(8)) })
        #expect(digits == Set("0123456789abcdef"))
    }
}
