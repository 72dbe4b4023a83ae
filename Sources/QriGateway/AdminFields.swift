import QriHTTP

/// What an admin request body is, from its `Content-Type` (parameters such as `charset`
/// ignored, the type compared without regard to case).
enum AdminBodyKind {
    /// `application/x-www-form-urlencoded`, also assumed when `Content-Type` is missing.
    case form
    case json
    /// `application/x-ndjson`: one JSON value a line (batch publish only).
    case ndjson
    case unsupported

    init(_ head: RequestHead) {
        guard let value = head.header("content-type") else {
            self = .form
            return
        }
        var type = value[...]
        if let semicolon = type.firstIndex(of: UInt8(ascii: ";")) { type = type[..<semicolon] }
        while let c = type.first, c == 0x20 || c == 0x09 { type = type.dropFirst() }
        while let c = type.last, c == 0x20 || c == 0x09 { type = type.dropLast() }
        func named(_ name: StaticString) -> Bool {
            name.withUTF8Buffer { name in
                type.count == name.count && zip(type, name).allSatisfy { ($0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0) == $1 }
            }
        }
        if named("application/x-www-form-urlencoded") {
            self = .form
        } else if named("application/json") {
            self = .json
        } else if named("application/x-ndjson") {
            self = .ndjson
        } else {
            self = .unsupported
        }
    }
}

/// The named string fields of an admin request: from its body (a form or a JSON object)
/// and its query string, the body winning; within each, the first of a repeated name wins.
/// Values are slices of the request's bytes wherever no decoding was needed.
struct AdminFields {
    private var body: [(name: ArraySlice<UInt8>, value: ArraySlice<UInt8>)] = []
    private var query: QueryString?

    init() {}

    /// The query string's fields.
    init(query: [UInt8]) {
        if !query.isEmpty { self.query = QueryString(query, plusIsSpace: true) }
    }

    /// The fields of `request`'s query string and of its body, a form or a JSON object;
    /// `parsedJSON` is the body when the caller has parsed it already.
    /// `fromQuery` false leaves the query string out (a POST reads its body only).
    static func read(_ request: HTTPRequest, parsedJSON: JSONValue? = nil, fromQuery: Bool = true) throws(AdminError) -> AdminFields {
        var fields = AdminFields(query: fromQuery ? request.head.query : [])
        guard !request.body.isEmpty else { return fields }
        switch AdminBodyKind(request.head) {
        case .form:
            fields.body = QueryString(request.body, plusIsSpace: true).pairs
        case .json:
            let value: JSONValue
            if let parsedJSON { value = parsedJSON } else { value = try parseJSON(request.body[...]) }
            guard case .object(let members) = value else { throw AdminError("body is not a JSON object") }
            try fields.addJSON(members)
        case .ndjson, .unsupported:
            throw .unsupportedMediaType
        }
        return fields
    }

    /// Parses a JSON body or entry, failing with a 400 that says where and why.
    static func parseJSON(_ bytes: ArraySlice<UInt8>) throws(AdminError) -> JSONValue {
        do throws(JSONError) {
            return try JSONReader.parse(bytes)
        } catch {
            throw AdminError("\(error)")
        }
    }

    /// A JSON object's members, every one of which must be a string.
    mutating func addJSON(_ members: [JSONMember]) throws(AdminError) {
        body.reserveCapacity(members.count)
        for member in members {
            guard case .string(let value) = member.value else {
                throw AdminError("field \(String(decoding: member.name, as: UTF8.self)) must be a string")
            }
            body.append((member.name, value))
        }
    }

    subscript(_ name: StaticString) -> ArraySlice<UInt8>? {
        name.withUTF8Buffer { name in body.first { $0.name.elementsEqual(name) }?.value } ?? query?.value(name)
    }

    /// The message of a publish, checked as SPEC says: non-empty peer and checksum, a message
    /// that may be empty.
    func publishMessage() throws(AdminError) -> IngestMessage {
        guard let peer = self["peer"], !peer.isEmpty else { throw AdminError("missing or empty field peer") }
        guard let checksum = self["checksum"], !checksum.isEmpty else { throw AdminError("missing or empty field checksum") }
        guard let message = self["message"] else { throw AdminError("missing field message") }
        return IngestMessage(peer: peer, checksum: checksum, message: message)
    }
}

/// A request the admin API refuses, with the answer's status and `{"error": …}` text.
struct AdminError: Error {
    let status: HTTPStatus
    let message: String

    init(_ message: String, status: HTTPStatus = .badRequest) {
        self.status = status
        self.message = message
    }

    static let unsupportedMediaType = AdminError(
        "Content-Type must be application/x-www-form-urlencoded or application/json", status: .unsupportedMediaType)
}
