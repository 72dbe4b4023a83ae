import QriHTTP

/// A `POST /publish` body (SPEC.md, *Admin listener*): one message, or a batch —
/// `application/x-ndjson` (one JSON object a line, blank lines skipped) or a JSON array.
enum PublishRequest {
    case single(IngestMessage)
    /// One entry per message of the batch, in order: the message, or why the entry is bad.
    /// A bad entry does not stop the others.
    case batch([Result<IngestMessage, AdminError>])

    /// Reads `request`; throws when the request as a whole is refused (415, or 400: a single
    /// publish with a bad field, a body that is not JSON, an empty batch, or a batch in which
    /// no entry is a JSON object).
    static func read(_ request: HTTPRequest) throws(AdminError) -> PublishRequest {
        switch AdminBodyKind(request.head) {
        case .ndjson:
            var entries: [Result<IngestMessage, AdminError>] = []
            var objects = 0
            var lineNumber = 0
            for line in request.body.split(separator: 0x0A, omittingEmptySubsequences: false) {
                lineNumber += 1
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
                do throws(AdminError) {
                    let value = try AdminFields.parseJSON(line)
                    entries.append(entry(value, objects: &objects))
                } catch {
                    entries.append(.failure(AdminError("line \(lineNumber): \(error.message)")))
                }
            }
            return try batch(entries, objects: objects)
        case .json where !request.body.isEmpty:
            let value = try AdminFields.parseJSON(request.body[...])
            guard case .array(let elements) = value else {
                return .single(try AdminFields.read(request, parsedJSON: value, fromQuery: false).publishMessage())
            }
            var objects = 0
            return try batch(elements.map { entry($0, objects: &objects) }, objects: objects)
        case .unsupported:
            throw AdminError(
                "Content-Type must be application/x-www-form-urlencoded, application/json or application/x-ndjson",
                status: .unsupportedMediaType)
        case .form, .json:
            return .single(try AdminFields.read(request, fromQuery: false).publishMessage())
        }
    }

    /// One entry of a batch: a JSON object with string fields `peer`, `checksum`, `message`.
    private static func entry(_ value: JSONValue, objects: inout Int) -> Result<IngestMessage, AdminError> {
        guard case .object(let members) = value else { return .failure(AdminError("entry is not a JSON object")) }
        objects += 1
        var fields = AdminFields()
        do throws(AdminError) {
            try fields.addJSON(members)
            return .success(try fields.publishMessage())
        } catch {
            return .failure(error)
        }
    }

    private static func batch(_ entries: [Result<IngestMessage, AdminError>], objects: Int) throws(AdminError) -> PublishRequest {
        guard !entries.isEmpty else { throw AdminError("empty batch") }
        guard objects > 0 else { throw AdminError("no entry of the batch is a JSON object") }
        return .batch(entries)
    }
}
