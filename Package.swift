// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Qri",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "qri", targets: ["qri"]),
        .executable(name: "qri-bench", targets: ["qri-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // C shims: the only places that touch headers Swift cannot import as they are.
        .systemLibrary(
            name: "CQriOpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CQriHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CQriNghttp2",
            pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]
        ),
        .target(
            name: "CQriSystem",
            cSettings: [.define("_GNU_SOURCE")]
        ),

        // Pure: what a byte stream is (`Transport`, `IOResult`) and the output queue's retry
        // rule; no system calls, so the TLS layer need not import the event loop.
        .target(name: "QriTransport", swiftSettings: strict),
        // Readiness loop, sockets and timers over POSIX.
        .target(name: "QriLoop", dependencies: ["CQriSystem", "QriTransport"], swiftSettings: strict),
        // TLS contexts and non-blocking connections over OpenSSL.
        .target(name: "QriTLS", dependencies: ["CQriOpenSSL", "QriTransport"], swiftSettings: strict),
        // Redis over our loop and TLS layer: hiredis as the RESP codec, our sockets.
        .target(
            name: "QriRedis",
            dependencies: ["CQriHiredis", "CQriSystem", "QriTransport", "QriLoop", "QriTLS",
                           .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strict
        ),
        // Pure protocol code: HTTP/1.1 request parsing, responses, SSE encoding.
        .target(name: "QriHTTP", swiftSettings: strict),
        // The gateway: registry, history, listeners, stream and ingest connections.
        .target(
            name: "QriGateway",
            dependencies: [
                "QriTransport", "QriLoop", "QriTLS", "QriHTTP", "QriRedis", "CQriNghttp2",
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "qri",
            dependencies: [
                "QriGateway",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),

        // The load generator of `make bench`: TLS streams and publishers on our own loop.
        .executableTarget(
            name: "qri-bench",
            dependencies: [
                "QriTransport", "QriLoop", "QriTLS", "QriHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),

        // libFuzzer targets; `make fuzz` builds them with -sanitize=fuzzer and -DFUZZING.
        .target(name: "FuzzSupport", path: "Tests/Fuzz/FuzzSupport"),
        .executableTarget(name: "FuzzRequestReader", dependencies: ["FuzzSupport", "QriHTTP"], path: "Tests/Fuzz/FuzzRequestReader"),
        .executableTarget(name: "FuzzSSEEncoder", dependencies: ["FuzzSupport", "QriHTTP"], path: "Tests/Fuzz/FuzzSSEEncoder"),
        .executableTarget(name: "FuzzJSONReader", dependencies: ["FuzzSupport", "QriHTTP"], path: "Tests/Fuzz/FuzzJSONReader"),
        .executableTarget(name: "FuzzIngestDecoder", dependencies: ["FuzzSupport", "QriGateway"], path: "Tests/Fuzz/FuzzIngestDecoder"),

        // Helpers the unit-test targets share (a seeded generator, a locked box).
        .target(name: "QriTestSupport", path: "Tests/QriTestSupport", swiftSettings: strict),
        .testTarget(name: "QriHTTPTests", dependencies: ["QriHTTP", "QriTestSupport"], swiftSettings: strict),
        .testTarget(name: "QriGatewayTests", dependencies: ["QriGateway", "QriTestSupport"], swiftSettings: strict),
        .testTarget(name: "QriRedisTests", dependencies: ["QriRedis"], swiftSettings: strict),
        .testTarget(name: "QriLoopTests", dependencies: ["QriLoop", "QriTransport", "QriTestSupport"], swiftSettings: strict),
    ]
)
