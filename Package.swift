// swift-tools-version:6.1
import PackageDescription

/// Upcoming features and strictness switched on for every target from one place.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Durable",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Durable", targets: ["Durable"]),
        .library(name: "DurableJournal", targets: ["DurableJournal"]),
        .library(name: "DurableSQLite", targets: ["DurableSQLite"]),
        .library(name: "DurablePostgres", targets: ["DurablePostgres"]),
        .library(name: "DurableServer", targets: ["DurableServer"]),
        .library(name: "DurableCommands", targets: ["DurableCommands"]),
        .library(name: "DurableTesting", targets: ["DurableTesting"]),
        .executable(name: "durable", targets: ["DurableCLI"]),
        .executable(name: "doc-pipeline", targets: ["DocPipeline"]),
        .executable(name: "claims-intake", targets: ["ClaimsIntake"]),
        .executable(name: "durable-bench", targets: ["DurableBenchmarks"]),
        .executable(name: "durable-test-worker", targets: ["DurableTestWorker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        // No default traits: swift-configuration support is not used, and its build costs every CI run.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        // The history model, the codec and the storage protocol: no SQL, no GRDB.
        .target(
            name: "DurableJournal",
            dependencies: ["CLZ4", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        // The embedded default backend: one SQLite file.
        .target(
            name: "DurableSQLite",
            dependencies: ["DurableJournal", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        // The scale-out backend: PostgreSQL through postgres-nio.
        .target(
            name: "DurablePostgres",
            dependencies: [
                "DurableJournal",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Opens a journal by its location with the backend it names.
        .target(
            name: "DurableBackends",
            dependencies: ["DurableJournal", "DurableSQLite", "DurablePostgres"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Durable",
            dependencies: [
                "DurableJournal", "DurableBackends",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // `serve`: the HTTP API, tokens and roles, /metrics.
        .target(
            name: "DurableServer",
            dependencies: [
                "Durable", "DurableJournal",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DurableCommands",
            dependencies: [
                "Durable", "DurableServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DurableTesting",
            dependencies: ["Durable", "DurableJournal"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "DurableCLI",
            dependencies: ["DurableCommands"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "DocPipeline",
            dependencies: ["Durable", "DurableCommands"],
            path: "Samples/DocPipeline",
            swiftSettings: swiftSettings
        ),
        // The flagship sample: real models (Tesseract, MiniLM, scikit-learn) in warm process pools.
        .executableTarget(
            name: "ClaimsIntake",
            dependencies: ["Durable", "DurableCommands", "DurableServer", .product(name: "GRDB", package: "GRDB.swift")],
            path: "Samples/ClaimsIntake",
            exclude: ["python", "bench.sh"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "DurableBenchmarks",
            dependencies: [
                "Durable", "DurableServer", "DurableSQLite",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/DurableBenchmarks",
            swiftSettings: swiftSettings
        ),
        // Workflows shared by the tests and the worker process they spawn and SIGKILL.
        .target(
            name: "DurableTestSupport",
            dependencies: ["Durable"],
            path: "Tests/DurableTestSupport",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "DurableTestWorker",
            dependencies: [
                "Durable", "DurableTestSupport", "DurableCommands",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tests/DurableTestWorker",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DurableJournalTests",
            dependencies: ["DurableJournal"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DurableSQLiteTests",
            dependencies: ["DurableSQLite", "DurableTestSupport", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        // The conformance suite every backend passes.
        .testTarget(
            name: "DurableStorageTests",
            dependencies: ["DurableJournal", "DurableBackends", "DurableTestSupport", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DurableTests",
            dependencies: [
                "Durable", "DurableJournal", "DurableTesting", "DurableTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DurableTestingTests",
            dependencies: ["DurableTesting", "DurableTestSupport"],
            resources: [.copy("Histories")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DurableServerTests",
            dependencies: ["Durable", "DurableServer", "DurableTestSupport", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DurableCommandsTests",
            dependencies: ["DurableCommands", "DurableTestSupport", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
    ]
)
