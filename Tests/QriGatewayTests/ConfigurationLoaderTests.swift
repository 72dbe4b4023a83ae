import QriGateway
import Testing

func load(flags: [String: String] = [:], env: [String: String] = [:],
                  file: [String: String]? = nil, path: String = "/etc/qri/qri.yaml") throws(ConfigurationError) -> GatewayConfiguration {
    try ConfigurationLoader.load(flags: flags, environment: env, file: file.map { (path, $0) })
}

/// The error `load` throws, or nil (recorded as an issue) when it succeeds.
func loadError(flags: [String: String] = [:], env: [String: String] = [:], file: [String: String]? = nil,
                       path: String = "/etc/qri/qri.yaml", sourceLocation: SourceLocation = #_sourceLocation) -> String? {
    do {
        _ = try load(flags: flags, env: env, file: file, path: path)
        Issue.record("expected a configuration error", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error.description
    }
}

@Suite struct ConfigurationLoaderTests {
    @Test func defaults() throws {
        let c = try load()
        #expect(c.listen.description == "0.0.0.0:8443")
        #expect(c.adminListen.description == "127.0.0.1:9443")
        #expect(c.ingestListen?.description == "127.0.0.1:5679")
        #expect(c.certificateFile == "certs/server.crt")
        #expect(c.keyFile == "certs/server.key")
        #expect(c.adminTokenFile == nil)
        #expect(c.adminPlaintext == false)
        #expect(c.corsOrigins == .anyOrigin)
        #expect(c.tickInterval == 30)
        #expect(c.heraldInterval == 30)
        #expect(c.history == 64)
        #expect(c.historyTTL == 300)
        #expect(c.historyMemory == 64 << 20)
        #expect(c.threads == nil)
        #expect(c.maxConnections == nil)
        #expect(c.maxAdminConnections == 256)
        #expect(c.maxIngestConnections == 1024)
        #expect(c.frameTimeout == 30)
        #expect(c.ocspFile == nil)
        #expect(c.maxHeaderBytes == 8 << 10)
        #expect(c.maxBodyBytes == 1 << 20)
        #expect(c.maxFrameBytes == 1 << 20)
        #expect(c.streamBufferBytes == 4 << 20)
        #expect(c.headerTimeout == 10)
        #expect(c.handshakeTimeout == 10)
        #expect(c.idleTimeout == 60)
        #expect(c.shutdownTimeout == 5)
        #expect(c.stateFile == "state/backdoor.json")
        #expect(c.logLevel == "info")
    }

    @Test func environmentNames() {
        #expect(ConfigurationLoader.environmentName(of: "admin-listen") == "QRI_ADMIN_LISTEN")
        #expect(ConfigurationLoader.environmentName(of: "max-header-bytes") == "QRI_MAX_HEADER_BYTES")
        #expect(ConfigurationLoader.environmentName(of: "threads") == "QRI_THREADS")
    }

    @Test func precedenceIsFlagThenEnvironmentThenFile() throws {
        let flags = ["history": "10"], env = ["QRI_HISTORY": "20"], file = ["history": "30"]
        #expect(try load(flags: flags, env: env, file: file).history == 10)
        #expect(try load(env: env, file: file).history == 20)
        #expect(try load(file: file).history == 30)
        #expect(try load().history == 64)
        #expect(try load(flags: flags, file: file).history == 10)
    }

    @Test func precedenceAppliesToEveryOption() throws {
        let c = try load(flags: ["listen": "127.0.0.1:1"],
                         env: ["QRI_LISTEN": "127.0.0.1:2", "QRI_ADMIN_LISTEN": "127.0.0.1:3"],
                         file: ["listen": "127.0.0.1:4", "admin-listen": "127.0.0.1:5", "ingest-listen": "127.0.0.1:6"])
        #expect(c.listen.port == 1)
        #expect(c.adminListen.port == 3)
        #expect(c.ingestListen?.port == 6)
    }

    @Test func everyOptionIsRead() throws {
        let c = try load(flags: [
            "listen": "[::1]:8000", "admin-listen": "localhost:0", "ingest-listen": "0.0.0.0:7000",
            "cert": "a.crt", "key": "a.key", "admin-token-file": "token", "admin-plaintext": "true",
            "cors-origins": "https://a.example, http://b.example:8080", "tick-interval": "0.5",
            "herald-interval": "2", "history": "0", "history-ttl": "0", "history-memory": "1M", "threads": "3",
            "max-connections": "500", "max-admin-connections": "7", "max-ingest-connections": "8",
            "frame-timeout": "0.25", "ocsp-file": "/etc/qri/ocsp.der", "max-header-bytes": "16K", "max-body-bytes": "2M", "max-frame-bytes": "64K",
            "stream-buffer-bytes": "128K", "header-timeout": "1.5", "handshake-timeout": "2.5", "idle-timeout": "90",
            "shutdown-timeout": "0", "state-file": "/var/lib/qri/state.json", "log-level": "DEBUG",
        ])
        #expect(c.listen.host == "::1" && c.listen.port == 8000)
        #expect(c.adminListen.description == "127.0.0.1:0")
        #expect(c.ingestListen?.port == 7000)
        #expect(c.certificateFile == "a.crt" && c.keyFile == "a.key" && c.adminTokenFile == "token")
        #expect(c.adminPlaintext)
        #expect(c.corsOrigins == .origins(["https://a.example", "http://b.example:8080"]))
        #expect(c.tickInterval == 0.5 && c.heraldInterval == 2)
        #expect(c.history == 0 && c.historyTTL == 0 && c.historyMemory == 1 << 20)
        #expect(c.threads == 3 && c.maxConnections == 500)
        #expect(c.maxAdminConnections == 7 && c.maxIngestConnections == 8)
        #expect(c.frameTimeout == 0.25 && c.ocspFile == "/etc/qri/ocsp.der")
        #expect(c.maxHeaderBytes == 16 << 10 && c.maxBodyBytes == 2 << 20)
        #expect(c.maxFrameBytes == 64 << 10 && c.streamBufferBytes == 128 << 10)
        #expect(c.headerTimeout == 1.5 && c.handshakeTimeout == 2.5 && c.idleTimeout == 90 && c.shutdownTimeout == 0)
        #expect(c.stateFile == "/var/lib/qri/state.json")
        #expect(c.logLevel == "debug")
    }

    @Test func environmentVariablesThatAreNotOptionsAreIgnored() throws {
        let c = try load(env: ["QRI_NOT_AN_OPTION": "x", "PATH": "/bin", "HISTORY": "abc", "QRI_ADMIN_TOKEN": "secret"])
        #expect(c.history == 64)
    }

    @Test func parseSize() {
        #expect(ConfigurationLoader.parseSize("512") == 512)
        #expect(ConfigurationLoader.parseSize("0") == 0)
        #expect(ConfigurationLoader.parseSize("8K") == 8192)
        #expect(ConfigurationLoader.parseSize("8k") == 8192)
        #expect(ConfigurationLoader.parseSize("64M") == 64 << 20)
        #expect(ConfigurationLoader.parseSize("1G") == 1 << 30)
        #expect(ConfigurationLoader.parseSize(" 2M ") == 2 << 20)
        #expect(ConfigurationLoader.parseSize("1024G") == 1 << 40)
        for bad in ["12Q", "", "K", "M", "-1", "-1K", "1.5M", "1 K", "1KB", "0x10", "1T", "1025G", "99999999999999999999", "１２"] {
            #expect(ConfigurationLoader.parseSize(bad) == nil, "'\(bad)'")
        }
    }

    @Test func invalidFlagValueNamesTheFlag() throws {
        let cases: [(String, String)] = [
            ("history", "abc"), ("history", "-1"), ("threads", "0"), ("listen", "nope"), ("listen", "127.0.0.1"),
            ("listen", "127.0.0.1:70000"), ("admin-listen", "example.com:80"), ("ingest-listen", "of"),
            ("admin-plaintext", "maybe"), ("cors-origins", "ftp://x"), ("cors-origins", ""), ("tick-interval", "0"),
            ("tick-interval", "soon"), ("history-ttl", "-1"), ("history-memory", "12Q"), ("max-header-bytes", "100"),
            ("max-frame-bytes", "8"), ("header-timeout", "nan"), ("idle-timeout", "inf"), ("log-level", "loud"),
            ("cert", ""), ("state-file", ""), ("max-admin-connections", "0"), ("max-ingest-connections", "1000001"),
            ("frame-timeout", "0.001"), ("ocsp-file", ""),
        ]
        for (option, value) in cases {
            let error = loadError(flags: [option: value])
            #expect(error?.contains("--\(option)") == true, "--\(option) \(value): \(error ?? "no error")")
            #expect(error?.contains("\n") == false)
        }
    }

    @Test func invalidEnvironmentValueNamesTheVariable() {
        let error = loadError(env: ["QRI_THREADS": "many"])
        #expect(error?.contains("QRI_THREADS") == true, "\(error ?? "")")
        #expect(error?.contains("many") == true)
        let other = loadError(env: ["QRI_MAX_BODY_BYTES": "1X"])
        #expect(other?.contains("QRI_MAX_BODY_BYTES") == true, "\(other ?? "")")
    }

    @Test func invalidFileValueNamesTheKeyAndTheFile() {
        let error = loadError(file: ["log-level": "verbose"], path: "/srv/qri/config.yaml")
        #expect(error?.contains("log-level") == true, "\(error ?? "")")
        #expect(error?.contains("/srv/qri/config.yaml") == true, "\(error ?? "")")
    }

    @Test func aValidFlagHidesAnInvalidEnvironmentValue() throws {
        #expect(try load(flags: ["threads": "2"], env: ["QRI_THREADS": "many"]).threads == 2)
    }

    @Test func streamBufferMustBeTwiceTheFrameCap() throws {
        let error = loadError(flags: ["max-frame-bytes": "1M", "stream-buffer-bytes": "1M"])
        #expect(error?.contains("stream-buffer-bytes") == true, "\(error ?? "")")
        #expect(loadError(flags: ["stream-buffer-bytes": "2047K"]) != nil)
        #expect(try load(flags: ["max-frame-bytes": "1M", "stream-buffer-bytes": "2M"]).streamBufferBytes == 2 << 20)
        // From the environment and the file too.
        #expect(loadError(env: ["QRI_MAX_FRAME_BYTES": "4M"]) != nil)
        #expect(try load(file: ["max-frame-bytes": "64K", "stream-buffer-bytes": "128K"]).maxFrameBytes == 64 << 10)
    }

    @Test func ingestListenOff() throws {
        #expect(try load(flags: ["ingest-listen": "off"]).ingestListen == nil)
        #expect(try load(env: ["QRI_INGEST_LISTEN": "off"]).ingestListen == nil)
        #expect(try load(file: ["ingest-listen": "off"]).ingestListen == nil)
        // A flag turns a file's "off" back on.
        #expect(try load(flags: ["ingest-listen": "127.0.0.1:0"], file: ["ingest-listen": "off"]).ingestListen?.port == 0)
    }

    @Test func booleans() throws {
        for yes in ["true", "yes", "on", "1", "TRUE"] { #expect(try load(flags: ["admin-plaintext": yes]).adminPlaintext) }
        for no in ["false", "no", "off", "0"] { #expect(try !load(flags: ["admin-plaintext": no]).adminPlaintext) }
    }

    @Test func corsPolicyHeaders() {
        let policy = CORSPolicy.origins(["https://a.example"])
        #expect(policy.headers(for: Array("https://a.example".utf8)).map(\.0) == ["Access-Control-Allow-Origin", "Vary"])
        #expect(policy.headers(for: Array("https://b.example".utf8)).map(\.0) == ["Vary"])
        #expect(CORSPolicy.anyOrigin.headers(for: nil).map(\.1) == ["*"])
    }
}
