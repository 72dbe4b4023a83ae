import QriHTTP
import QriRedis
import QriLoop
import Synchronization

/// An answer of the admin API, before serialization.
struct AdminResponse {
    var status: HTTPStatus
    var headers: [(String, String)] = []
    var body: [UInt8] = []
    /// An answer that comes later (a change made durable off the loop, a publish through
    /// Redis): called on the connection's loop with its worker and what delivers the answer.
    var later: ((LoopWorker, @escaping (AdminResponse) -> Void) -> Void)?

    static func json(_ status: HTTPStatus, _ json: JSONWriter) -> AdminResponse {
        AdminResponse(status: status, headers: [("Content-Type", "application/json")], body: json.bytes)
    }

    static func error(_ status: HTTPStatus, _ message: String) -> AdminResponse {
        AdminResponse(status: status, headers: [("Content-Type", "application/json")], body: JSONWriter.error(message))
    }

    static func error(_ error: AdminError) -> AdminResponse {
        .error(error.status, error.message)
    }
}

/// The admin routes (SPEC.md "Admin listener"): token check, `/backdoor`, `/publish`,
/// `/metrics`, `/healthz`, `/readyz`, CORS. Stateless itself: the stored messages live in the registry
/// and in the state file, whose writes it serializes.
final class AdminAPI: Sendable {
    private let core: GatewayCore
    /// The owner of the stored messages: every change goes through it.
    private let store: any BackdoorStore
    /// Emits the metrics text; set when a Prometheus registry was bootstrapped.
    private let exportMetrics: (@Sendable () -> [UInt8])?

    init(core: GatewayCore, store: any BackdoorStore, exportMetrics: (@Sendable () -> [UInt8])?) {
        self.core = core
        self.store = store
        self.exportMetrics = exportMetrics
    }

    func handle(_ request: HTTPRequest) -> AdminResponse {
        var response = route(request)
        if response.later == nil { finish(&response, for: request) }
        return response
    }

    /// Adds what every answer carries (CORS); for an answer that came later too.
    func finish(_ response: inout AdminResponse, for request: HTTPRequest) {
        response.headers += core.configuration.corsOrigins.headers(for: request.head.header("origin"))
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
        if head.pathIs("/readyz") {
            guard head.methodIs("GET") || head.methodIs("HEAD") else { return notAllowed("GET, HEAD") }
            if core.draining {
                return AdminResponse(status: .serviceUnavailable, headers: [("Content-Type", "text/plain"), ("Retry-After", "1")],
                                     body: Array("draining".utf8))
            }
            if let reason = core.cluster?.notReadyReason() {
                return AdminResponse(status: .serviceUnavailable, headers: [("Content-Type", "text/plain"), ("Retry-After", "1")],
                                     body: Array(reason.utf8))
            }
            return AdminResponse(status: .ok, headers: [("Content-Type", "text/plain")], body: Array("ok".utf8))
        }
        if head.pathIs("/healthz") {
            guard head.methodIs("GET") || head.methodIs("HEAD") else { return notAllowed("GET, HEAD") }
            return AdminResponse(status: .ok, headers: [("Content-Type", "text/plain")], body: Array("ok".utf8))
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

    private func type(_ fields: AdminFields) throws(AdminError) -> String {
        guard let raw = fields["type"] else { throw AdminError("missing field type") }
        let type = String(decoding: raw, as: UTF8.self)
        guard BackdoorType.isValid(type) else { throw AdminError("type must be exactly three digits") }
        return type
    }

    // MARK: Routes

    private func backdoor(_ request: HTTPRequest) -> AdminResponse {
        let head = request.head
        do throws(AdminError) {
            if head.methodIs("GET") {
                let fields = AdminFields(query: head.query)
                var json = JSONWriter()
                if fields["type"] != nil {
                    let type = try type(fields)
                    let stored = core.registry.heralds().first { $0.type == type }
                    json.object { json in
                        json.field("type", type)
                        json.key("message")
                        if let stored { json.string(stored.message) } else { json.null() }
                    }
                } else {
                    json.array { json in
                        for stored in core.registry.heralds() {
                            json.object { json in
                                json.field("type", stored.type)
                                json.key("message")
                                json.string(stored.message)
                            }
                        }
                    }
                }
                return .json(.ok, json)
            }
            let isPost = head.methodIs("POST")
            guard isPost || head.methodIs("DELETE") else { return notAllowed("GET, POST, DELETE") }
            // POST reads its fields from the body only; DELETE from the body or the query.
            let fields = try AdminFields.read(request, fromQuery: !isPost)
            let type = try type(fields)
            guard isPost else { return changeStored(.remove(type: type)) }
            guard let field = fields["message"] else { throw AdminError("missing field message") }
            let message = Array(field)
            guard message != Array("delete".utf8) else {
                throw AdminError("the message 'delete' is reserved: clients read it as a deletion")
            }
            guard String(validating: message, as: UTF8.self) != nil else { throw AdminError("message must be UTF-8") }
            core.metrics.received(.backdoor)
            return changeStored(.store(type: type, message: message))
        } catch {
            return .error(error)
        }
    }

    /// Hands the change to the store, which makes it durable off the loop, applies and
    /// broadcasts it, then answers `204`: a change that cannot be made durable is not made.
    private func changeStored(_ change: BackdoorChange) -> AdminResponse {
        var response = AdminResponse(status: .noContent)
        response.later = { [store] worker, respond in
            // The store answers on this same loop (`replyOn`): the closure never runs elsewhere.
            nonisolated(unsafe) let respond = respond
            store.change(change, replyOn: worker.loop) { failure in
                guard let failure else { return respond(AdminResponse(status: .noContent)) }
                var answer = AdminResponse.error(failure.retryable ? .serviceUnavailable : .internalServerError, failure.message)
                if failure.retryable { answer.headers.append(("Retry-After", "1")) }
                respond(answer)
            }
        }
        return response
    }

    /// Routes the messages of one request as one batch: one registry lock, one hand-off per
    /// loop. Answers each message's id and the streams it reached on this node.
    private func publish(_ request: HTTPRequest) -> AdminResponse {
        guard request.head.methodIs("POST") else { return notAllowed("POST") }
        let parsed: PublishRequest
        do throws(AdminError) {
            parsed = try PublishRequest.read(request)
        } catch {
            return .error(error)
        }
        if core.cluster != nil { return publishThroughRedis(parsed) }
        switch parsed {
        case .single(let message):
            var json = JSONWriter()
            core.route([message], source: .publish) { _, routed in Self.write(routed, to: &json) }
            return .json(.accepted, json)
        case .batch(let entries):
            var messages: [IngestMessage] = []
            messages.reserveCapacity(entries.count)
            for case .success(let message) in entries { messages.append(message) }
            var routed: [Registry.Routed] = []
            routed.reserveCapacity(messages.count)
            core.route(messages, source: .publish) { _, result in routed.append(result) }
            return .json(.accepted, Self.batchAnswer(entries, routed, Self.write))
        }
    }

    /// `{"results": [...]}`: for each entry of a batch in order, what publishing its message
    /// gave (`results` holds one per good entry), or its error.
    private static func batchAnswer<R>(_ entries: [Result<IngestMessage, AdminError>], _ results: [R],
                                       _ write: (R, inout JSONWriter) -> Void) -> JSONWriter {
        var json = JSONWriter(capacity: 16 + entries.count * 40)
        var next = results.makeIterator()
        json.object { json in
            json.key("results")
            json.array { json in
                for entry in entries {
                    switch entry {
                    case .success: write(next.next()!, &json)
                    case .failure(let error): json.object { $0.field("error", error.message) }
                    }
                }
            }
        }
        return json
    }

    /// `{"id": "<hex>", "delivered": N}`.
    private static func write(_ routed: Registry.Routed, to json: inout JSONWriter) {
        json.object { json in
            json.field("id", hex: routed.id)
            json.field("delivered", routed.streams)
        }
    }


    /// A publish in a cluster: answered once Redis has it (`{"id", "nodes"}` per message, a
    /// batch as one pipeline), or `503` with `Retry-After` when nothing could be published
    /// within REDIS_TIMEOUT.
    private func publishThroughRedis(_ parsed: PublishRequest) -> AdminResponse {
        let entries: [Result<IngestMessage, AdminError>]
        switch parsed {
        case .single(let message): entries = [.success(message)]
        case .batch(let all): entries = all
        }
        var messages: [IngestMessage] = []
        for case .success(let message) in entries { messages.append(message) }
        core.metrics.received(.publish, count: messages.count)
        let timeout = core.configuration.redisTimeout.nanoseconds
        var response = AdminResponse(status: .accepted)
        response.later = { worker, respond in
            guard let cluster = worker.clusterLoop else { return }
            cluster.publish(messages, deadline: Clock.monotonicNanoseconds() + timeout) { results in
                guard results.contains(where: { if case .success = $0 { true } else { false } }) || results.isEmpty else {
                    var failure = AdminResponse.error(.serviceUnavailable, "Redis is unavailable; retry later")
                    failure.headers.append(("Retry-After", "1"))
                    return respond(failure)
                }
                func write(_ result: Result<ClusterPublished, RedisError>, to json: inout JSONWriter) {
                    switch result {
                    case .success(let published):
                        json.object { json in
                            json.field("id", hex: published.id)
                            json.field("nodes", published.nodes)
                        }
                    case .failure:
                        json.object { $0.field("error", "Redis is unavailable; retry later") }
                    }
                }
                var json = JSONWriter()
                if case .single = parsed {
                    write(results[0], to: &json)
                    return respond(.json(.accepted, json))
                }
                respond(.json(.accepted, Self.batchAnswer(entries, results, write)))
            }
        }
        return response
    }
}
