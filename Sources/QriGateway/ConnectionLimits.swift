/// How many connections each listener may hold open at once. Admin and ingest have their
/// own caps, whose descriptors the public cap leaves free: no number of public connections
/// keeps an operator from `/healthz` and `/metrics` or a backend from the ingest port.
struct ConnectionLimits: Sendable, Equatable {
    var `public`: Int
    var admin: Int
    var ingest: Int
    /// Said once at start-up when the descriptor limit forced a cap below what was asked.
    var notes: [String] = []

    func limit(for listener: GatewayMetrics.Listener) -> Int {
        switch listener {
        case .public: return self.public
        case .admin: return admin
        case .ingest: return ingest
        }
    }

    /// Descriptors kept for what is not a connection: per loop its poller, wake-up and
    /// listening sockets and its spare descriptor; for the process its standard streams and
    /// the files it reads and writes while running (state file, certificates on reload).
    static func fixedReserve(loops: Int) -> Int { 32 + 8 * loops }

    /// Sizes the caps to `descriptorLimit` (the soft limit once raised to the hard one):
    /// admin and ingest get their configured caps, shrunk to a quarter of the limit
    /// together when it is too small for them; the public listener gets what is left, or
    /// MAX_CONNECTIONS when lower (100,000 by default). An explicit MAX_CONNECTIONS above
    /// what is left is allowed, but the public listener still stops there, so the reserved
    /// descriptors stay out of its reach.
    static func sized(maxConnections: Int?, maxAdmin: Int, maxIngest: Int,
                      descriptorLimit: Int, loops: Int) -> ConnectionLimits {
        var notes: [String] = []
        var admin = maxAdmin, ingest = maxIngest
        let share = max(descriptorLimit / 4, 2)
        if admin + ingest > share {
            admin = max(1, min(admin, share * admin / (admin + ingest)))
            ingest = max(1, min(ingest, share - admin))
            notes.append("descriptor limit \(descriptorLimit) is too small for \(maxAdmin) admin and \(maxIngest) ingest connections: reserving \(admin) and \(ingest)")
        }
        let left = max(descriptorLimit - admin - ingest - fixedReserve(loops: loops), 16)
        let wanted = maxConnections ?? 100_000
        if let maxConnections, maxConnections > left {
            notes.append("--max-connections \(maxConnections) is above what the descriptor limit \(descriptorLimit) leaves after the admin and ingest reserves: public connections stop at \(left)")
        }
        return ConnectionLimits(public: min(wanted, left), admin: admin, ingest: ingest, notes: notes)
    }
}
