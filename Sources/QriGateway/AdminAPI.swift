import Foundation
import QriHTTP
import Synchronization

/// An answer of the admin API, before serialization.
struct AdminResponse {
    var status: HTTPStatus
    var headers: [(String, String)] = []
    var body: [UInt8] = []

    static func json(_ status: HTTPStatus, _ body: String) -> AdminResponse {
        AdminResponse(status: status, headers: [("Content-Type", "application/json")], body: Array(body.utf8))
    }

    static func error(_ status: HTTPStatus, _ message: String) -> AdminResponse {
        AdminResponse(status: status, headers: [("Content-Type", "application/json")], body: JSON.error(message))
    }
}

/// The admin routes (SPEC.md "Admin listener"): token check, `/backdoor`, `/publish`,
/// `/metrics`, `/healthz`, CORS. Stateless itself: the stored messages live in the registry
/// and in the state file, whose writes it serializes.
final class AdminAPI: Sendable {
    private let core: GatewayCore
    private let stateFile: HeraldStateFile
    /// Serializes changes of the stored messages, so the file is written in the same order
    /// the registry applies them.
    private let changes = Mutex(())
    /// Emits the metrics text; set when a Prometheus registry was bootstrapped.
    private let exportMetrics: (@Sendable () -> [UInt8])?

    init(core: GatewayCore, stateFile: HeraldStateFile, exportMetrics: (@Sendable () -> [UInt8])?) {
        self.core = core
        self.stateFile = stateFile
        self.exportMetrics = exportMetrics
    }

    func handle(_ request: HTTPRequest) -> AdminResponse {
        let head = request.head
        let origin = head.header("origin")
        var response = route(request)
        response.headers += core.configuration.corsOrigins.headers(for: origin)
        return response
    }

    private func route(_ request: HTTPRequest) -> AdminResponse {
        let head = request.head
        if head.methodIs("OPTIONS") && head.header("access-control-request-method") != nil {
            return AdminResponse(status: .noContent, headers: [
                ("Access-Control-Allow-Methods", "GET, POST, DELETE"),
                ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
                ("Access-Control-Max-Age", "86400"),
            ])
        }
        if head.pathIs("/healthz") {
            guard head.methodIs("GET") || head.methodIs("HEAD") else { return notAllowed("GET, HEAD") }
            return AdminResponse(status: .ok, headers: [("Content-Type", "text/plain")], body: Array("ok".utf8))
        }
        if head.pathIs("/readyz") {
            guard head.methodIs("GET") || head.methodIs("HEAD") else { return notAllowed("GET, HEAD") }
            return core.draining
                ? AdminResponse(status: .serviceUnavailable, headers: [("Content-Type", "text/plain"), ("Retry-After", "1")], body: Array("draining".utf8))
                : AdminResponse(status: .ok, headers: [("Content-Type", "text/plain")], body: Array("ok".utf8))
        }
        guard authorized(head) else {
            var response = AdminResponse.error(.unauthorized, core.configuration.adminToken == nil
                ? "no admin token is configured" : "missing or wrong bearer token")
            response.headers.append(("WWW-Authenticate", "Bearer"))
            return response
        }
        switch head.path {
        case Array("/backdoor".utf8): return backdoor(request)
        case Array("/publish".utf8): return publish(request)
        case Array("/metrics".utf8):
            guard head.methodIs("GET") else { return notAllowed("GET") }
            core.metrics.pairs.record(core.registry.pairCount)
            let text = exportMetrics?() ?? []
            return AdminResponse(status: .ok, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], body: text)
        default:
            return .error(.notFound, "no such route")
        }
    }

    private func notAllowed(_ methods: String) -> AdminResponse {
        var response = AdminResponse.error(.methodNotAllowed, "method not allowed")
        response.headers.append(("Allow", methods))
        return response
    }

    /// Constant-time comparison of the bearer token: the time taken does not depend on how
    /// much of a wrong token matches.
    private func authorized(_ head: RequestHead) -> Bool {
        guard let token = core.configuration.adminToken, let value = head.header("authorization") else { return false }
        let prefix = Array("bearer ".utf8)
        guard value.count > prefix.count, value.prefix(prefix.count).map({ $0 | 0x20 }) == prefix else { return false }
        return Self.constantTimeEqual(Array(value.dropFirst(prefix.count)), token)
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for i in 0..<max(a.count, b.count) {
            difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        // Fold any length difference wider than a byte too.
        return difference == 0 && a.count == b.count
    }

    // MARK: Fields

    private enum Fields {
        case fields([String: [UInt8]])
        case failure(AdminResponse)
    }

    /// Reads fields from the query string (unless `fromQuery` is false) and, for POST and
    /// DELETE, the body.
    private func fields(_ request: HTTPRequest, fromBody: Bool, fromQuery: Bool = true) -> Fields {
        var result: [String: [UInt8]] = [:]
        for pair in QueryString(request.head.query, plusIsSpace: true).pairs where fromQuery {
            result[String(decoding: pair.name, as: UTF8.self)] = result[String(decoding: pair.name, as: UTF8.self)] ?? pair.value
        }
        guard fromBody, !request.body.isEmpty else { return .fields(result) }
        let contentType = request.head.header("content-type").map {
            String(decoding: $0, as: UTF8.self).split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        }
        var bodyFields: [String: [UInt8]] = [:]
        switch contentType {
        case nil, "application/x-www-form-urlencoded":
            for pair in QueryString(request.body, plusIsSpace: true).pairs {
                let name = String(decoding: pair.name, as: UTF8.self)
                if bodyFields[name] == nil { bodyFields[name] = pair.value }
            }
        case "application/json":
            guard let object = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any] else {
                return .failure(.error(.badRequest, "body is not a JSON object"))
            }
            for (name, value) in object {
                guard let text = value as? String else { return .failure(.error(.badRequest, "field \(name) must be a string")) }
                bodyFields[name] = Array(text.utf8)
            }
        default:
            return .failure(.error(.unsupportedMediaType, "Content-Type must be application/x-www-form-urlencoded or application/json"))
        }
        // The body wins over the query string.
        result.merge(bodyFields) { _, body in body }
        return .fields(result)
    }

    private enum TypeField {
        case success(String)
        case failure(AdminResponse)
    }

    private func type(_ fields: [String: [UInt8]]) -> TypeField {
        guard let raw = fields["type"] else { return .failure(AdminResponse.error(.badRequest, "missing field type")) }
        let type = String(decoding: raw, as: UTF8.self)
        guard BackdoorType.isValid(type) else { return .failure(AdminResponse.error(.badRequest, "type must be exactly three digits")) }
        return .success(type)
    }

    // MARK: Routes

    private func backdoor(_ request: HTTPRequest) -> AdminResponse {
        let head = request.head
        if head.methodIs("GET") {
            guard case .fields(let fields) = fields(request, fromBody: false) else { return .error(.badRequest, "bad query") }
            if fields["type"] != nil {
                switch type(fields) {
                case .failure(let response): return response
                case .success(let type):
                    let stored = core.registry.heralds().first { $0.type == type }
                    return .json(.ok, "{\"type\": \(JSON.string(type)), \"message\": \(stored.map { JSON.string(String(decoding: $0.message, as: UTF8.self)) } ?? "null")}")
                }
            }
            let all = core.registry.heralds().map {
                "{\"type\": \(JSON.string($0.type)), \"message\": \(JSON.string(String(decoding: $0.message, as: UTF8.self)))}"
            }
            return .json(.ok, "[" + all.joined(separator: ", ") + "]")
        }
        let isPost = head.methodIs("POST")
        guard isPost || head.methodIs("DELETE") else { return notAllowed("GET, POST, DELETE") }
        // SPEC: POST reads its fields from the body only; DELETE from the body or the query.
        let parsed = fields(request, fromBody: true, fromQuery: !isPost)
        guard case .fields(let fields) = parsed else {
            if case .failure(let response) = parsed { return response }
            return .error(.badRequest, "bad request")
        }
        let type: String
        switch self.type(fields) {
        case .failure(let response): return response
        case .success(let t): type = t
        }
        if isPost {
            guard let message = fields["message"] else { return .error(.badRequest, "missing field message") }
            guard message != Array("delete".utf8) else {
                return .error(.badRequest, "the message 'delete' is reserved: clients read it as a deletion")
            }
            guard String(validating: message, as: UTF8.self) != nil else { return .error(.badRequest, "message must be UTF-8") }
            return changeStored { current in
                current.removeAll { $0.type == type }
                current.append((type, message))
                current.sort { $0.type < $1.type }
            } apply: {
                core.registry.storeHerald(type: type, message: message)
                core.metrics.received(.backdoor)
            }
        }
        return changeStored { current in
            current.removeAll { $0.type == type }
        } apply: {
            core.registry.removeHerald(type: type)
        }
    }

    /// Writes the changed set of stored messages to the state file, then applies the change
    /// and broadcasts: a change that cannot be made durable is not made at all.
    private func changeStored(_ edit: (inout [(type: String, message: [UInt8])]) -> Void, apply: () -> Void) -> AdminResponse {
        changes.withLock { _ in
            var stored = core.registry.heralds()
            edit(&stored)
            do {
                try stateFile.save(stored)
            } catch {
                core.logger.error("cannot save stored messages", metadata: ["error": "\(error)"])
                return .error(.internalServerError, "cannot save the state file")
            }
            apply()
            return AdminResponse(status: .noContent)
        }
    }

    private func publish(_ request: HTTPRequest) -> AdminResponse {
        guard request.head.methodIs("POST") else { return notAllowed("POST") }
        let parsed = fields(request, fromBody: true)
        guard case .fields(let fields) = parsed else {
            if case .failure(let response) = parsed { return response }
            return .error(.badRequest, "bad request")
        }
        guard let peer = fields["peer"], !peer.isEmpty else { return .error(.badRequest, "missing or empty field peer") }
        guard let checksum = fields["checksum"], !checksum.isEmpty else { return .error(.badRequest, "missing or empty field checksum") }
        guard let message = fields["message"] else { return .error(.badRequest, "missing field message") }
        let routed = core.route(message, to: PairKey(peer: peer, checksum: checksum), source: .publish)
        return .json(.accepted, "{\"delivered\": \(routed.streams)}")
    }
}
