import Foundation

/// The CPU's model name (`/proc/cpuinfo`'s first "model name"), for whatever records which machine measured it:
/// a latency table, a benchmark row.
public enum CPUModel {
    public static var name: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
              let colon = line.firstIndex(of: ":")
        else { return "unknown" }
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
}
