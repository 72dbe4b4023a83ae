import QriLoop
import Synchronization

/// A change of the stored backdoor messages.
enum BackdoorChange: Sendable {
    case store(type: String, message: [UInt8])
    case remove(type: String)
}

/// The one owner of the stored backdoor messages: it makes a change durable (state file on
/// one node, Redis in a cluster) off the loop threads, then applies it to the registry (which
/// broadcasts it and hands it to new streams), and only then answers. Nothing else writes
/// the set; `Registry.heralds()` is its read view.
protocol BackdoorStore: AnyObject, Sendable {
    /// Applies `change`; `done` runs on `loop` with nil once the change is durable and
    /// applied, or with why it could not be made (the change is then not made at all).
    func change(_ change: BackdoorChange, replyOn loop: EventLoop, done: @escaping @Sendable (BackdoorFailure?) -> Void)
    /// Stops the store's own thread, if it has one.
    func stop()
}

/// Why a change of the stored messages was not made.
struct BackdoorFailure: Error, Sendable {
    let message: String
    /// Whether retrying later may help (Redis away: 503) or not (the file cannot be written: 500).
    let retryable: Bool
}

/// Stored messages in the state file: every change is written (temporary file, fsync,
/// rename, fsync of the folder) on a thread of the store's own, one change after another,
/// so that no loop thread waits for a disk.
final class FileBackdoorStore: BackdoorStore, @unchecked Sendable {
    private let file: HeraldStateFile
    private let registry: Registry
    private let core: GatewayCore
    private let loop: EventLoop
    private var thread: LoopThread?

    init(file: HeraldStateFile, core: GatewayCore) throws(ConfigurationError) {
        self.file = file
        self.core = core
        registry = core.registry
        do {
            loop = try EventLoop(index: -1)
        } catch {
            throw ConfigurationError("cannot start the state-file thread: \(error)")
        }
        let loop = self.loop
        thread = LoopThread(name: "qri-state") { loop.run() }
    }

    func change(_ change: BackdoorChange, replyOn reply: EventLoop, done: @escaping @Sendable (BackdoorFailure?) -> Void) {
        loop.execute { [self] in
            var stored = registry.heralds()
            switch change {
            case .store(let type, let message):
                stored.removeAll { $0.type == type }
                stored.append((type, message))
                stored.sort { $0.type < $1.type }
            case .remove(let type):
                stored.removeAll { $0.type == type }
            }
            do {
                try file.save(stored)
            } catch {
                core.logger.error("cannot save stored messages", metadata: ["error": "\(error)"])
                reply.execute { done(BackdoorFailure(message: "cannot save the state file", retryable: false)) }
                return
            }
            switch change {
            case .store(let type, let message): registry.storeHerald(type: type, message: message)
            case .remove(let type): registry.removeHerald(type: type)
            }
            reply.execute { done(nil) }
        }
    }

    func stop() {
        loop.stop()
        thread?.join()
        thread = nil
    }
}
