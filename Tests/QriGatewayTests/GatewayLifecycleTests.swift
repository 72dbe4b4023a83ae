import Foundation
import Logging
import QriGateway
import QriLoop
import Testing

/// A throw-away certificate and key, made with the openssl command line.
private func makeCertificate(in folder: URL) throws -> (certificate: String, key: String) {
    let certificate = folder.appendingPathComponent("server.crt").path
    let key = folder.appendingPathComponent("server.key").path
    let openssl = Process()
    openssl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    openssl.arguments = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                         "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout", key, "-out", certificate]
    openssl.standardError = FileHandle.nullDevice
    try openssl.run()
    openssl.waitUntilExit()
    #expect(openssl.terminationStatus == 0)
    return (certificate, key)
}

private func openDescriptors() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

@Suite(.serialized) struct GatewayLifecycleTests {
    /// The loops, the registry and the core refer to each other while serving; after
    /// `shutdown()` nothing may keep the gateway alive, or its loops' epoll and eventfd
    /// descriptors would outlive it.
    @Test func aStoppedGatewayIsFreedWithItsDescriptors() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("qri-lifecycle-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let files = try makeCertificate(in: folder)
        var configuration = GatewayConfiguration()
        configuration.listen = SocketAddress(host: "127.0.0.1", port: 0)
        configuration.adminListen = SocketAddress(host: "127.0.0.1", port: 0)
        configuration.ingestListen = SocketAddress(host: "127.0.0.1", port: 0)
        configuration.certificateFile = files.certificate
        configuration.keyFile = files.key
        configuration.stateFile = folder.appendingPathComponent("backdoor.json").path
        configuration.threads = 2

        let before = openDescriptors()
        weak var freed: Gateway?
        try {
            let gateway = try Gateway(configuration: configuration, logger: Logger(label: "test"))
            _ = try gateway.start()
            #expect(openDescriptors() > before)
            gateway.shutdown()
            freed = gateway
        }()
        #expect(freed == nil, "the stopped gateway is still referenced")
        #expect(openDescriptors() <= before, "descriptors left open by a stopped gateway")
    }
}
