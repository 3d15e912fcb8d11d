@testable import DurableServer
import DurableTestSupport
import Foundation
import Testing

/// `serve --trusted-proxy`: the ranges it reads, and the client it takes from `X-Forwarded-For`.
@Suite struct TrustedProxyTests {
    func ranges(_ texts: String...) throws -> [AddressRange] { try texts.map { try AddressRange($0) } }

    @Test func rangesAreAddressesOrCIDRAndNothingElse() throws {
        #expect(try AddressRange("10.0.0.0/8").description == "10.0.0.0/8")
        #expect(try AddressRange("127.0.0.1").description == "127.0.0.1/32")
        #expect(try AddressRange("::1").description == "::1/128")
        #expect(try AddressRange("fd00::/8").description == "fd00::/8")
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/8/9", "10.0.0.0/", "1.2.3.4:80", "[::1]", "localhost",
                    "", "1.2.3", "10.0.0.0/x", "1.2.3.4 "]
        {
            #expect(throws: AddressRangeError.self, "'\(bad)'") { try AddressRange(bad) }
        }
        let error = try #require(throws: AddressRangeError.self) { try AddressRange("10.0.0.0/33") }
        #expect("\(error)" == "'10.0.0.0/33' is not an IP address or a CIDR range (such as 10.0.0.0/8, 127.0.0.1 or fd00::/8)")
    }

    @Test func aRangeHoldsTheAddressesOfItsPrefix() throws {
        func holds(_ range: String, _ address: String) throws -> Bool {
            try AddressRange(range).contains(try #require(IPAddress(address)))
        }
        #expect(try holds("10.0.0.0/8", "10.255.1.2"))
        #expect(try !holds("10.0.0.0/8", "11.0.0.1"))
        #expect(try holds("192.168.1.128/25", "192.168.1.200"))
        #expect(try !holds("192.168.1.128/25", "192.168.1.100"))
        #expect(try holds("0.0.0.0/0", "203.0.113.7"))
        #expect(try !holds("0.0.0.0/0", "::1"), "an IPv4 range holds no IPv6 address")
        #expect(try holds("10.0.0.0/8", "::ffff:10.1.1.1"), "an IPv4 address mapped into IPv6 is the IPv4 address")
        #expect(try holds("2001:db8::/32", "2001:db8:1::5"))
        #expect(try !holds("2001:db8::/32", "2001:db9::"))
        #expect(try holds("127.0.0.1", "127.0.0.1"))
        #expect(try !holds("127.0.0.1", "127.0.0.2"))
    }

    @Test func theClientIsTheLastForwardedAddressThatIsNotATrustedProxy() throws {
        let trusted = try ranges("127.0.0.1", "10.0.0.0/8")
        func origin(_ forwarded: [String], peer: String = "127.0.0.1") -> String {
            trusted.origin(peerIP: peer, peer: "\(peer):4711", forwardedFor: forwarded)
        }
        #expect(origin(["203.0.113.7"]) == "203.0.113.7 via 127.0.0.1:4711")
        // What the client sent before its own address is not believed; trusted hops after it are skipped.
        #expect(origin(["198.51.100.9, 203.0.113.7, 10.1.2.3"]) == "203.0.113.7 via 127.0.0.1:4711")
        #expect(origin(["198.51.100.9", "203.0.113.7,10.1.2.3"]) == "203.0.113.7 via 127.0.0.1:4711", "two header fields")
        #expect(origin(["10.9.9.9, 10.1.2.3"]) == "10.9.9.9 via 127.0.0.1:4711", "only trusted hops: the first")
        #expect(origin(["[2001:db8::7]:443"]) == "2001:db8::7 via 127.0.0.1:4711")
        #expect(origin(["203.0.113.7:5555"]) == "203.0.113.7 via 127.0.0.1:4711")
        #expect(origin(["garbage, 203.0.113.7"]) == "203.0.113.7 via 127.0.0.1:4711")
        // No client named: the peer.
        #expect(origin(["203.0.113.7, unknown"]) == "127.0.0.1:4711")
        #expect(origin([""]) == "127.0.0.1:4711")
        #expect(origin([]) == "127.0.0.1:4711")
        // A peer that is not a trusted proxy is believed about nothing.
        #expect(origin(["203.0.113.7"], peer: "198.51.100.1") == "198.51.100.1:4711")
        #expect([AddressRange]().origin(peerIP: "127.0.0.1", peer: "127.0.0.1:1", forwardedFor: ["203.0.113.7"]) == "127.0.0.1:1")
        // A long list is read from its end only, 64 entries.
        let padded = Array(repeating: "10.0.0.1", count: 100).joined(separator: ",")
        #expect(origin(["203.0.113.7," + padded]) == "10.0.0.1 via 127.0.0.1:4711")
        #expect(origin([padded.split(separator: ",").prefix(63).joined(separator: ",") + ",203.0.113.7"]) == "203.0.113.7 via 127.0.0.1:4711")
    }

    @Test func serveRefusesARangeItCannotReadWithOneLineAndExit64() async throws {
        for bad in ["10.0.0.0/33", "10.0.0.1,,", "proxy.example.com", "[::1]"] {
            let result = try await runCommand(
                try productPath("durable"), ["serve", "--auth", "/nonexistent/tokens.json", "--trusted-proxy", bad], timeout: .seconds(30))
            #expect(result.status == 64, "\(bad): \(result.status) \(result.stderr)")
            let lines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
            #expect(lines.count == 1 && lines[0].contains("--trusted-proxy") && lines[0].contains("is not an IP address or a CIDR range"),
                    "\(bad): \(result.stderr)")
        }
    }
}
