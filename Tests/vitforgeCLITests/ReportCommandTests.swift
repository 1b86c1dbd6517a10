import Foundation
import Testing
import ViTForgeTestBasics

/// `vitforge report` on bad input: one stderr line naming the file, non-zero exit, no page written. (Pages from real
/// prune reports are drawn and opened in headless Chromium by Tests/Deployment/report_check.py in CI.)
struct ReportCommandTests {
    @Test("report: a file that is not a prune report, or is missing, fails in one line and writes nothing")
    func badReports() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let notReport = folder.path("other.json")
        try Data("{\"accuracy\": 0.5}".utf8).write(to: URL(fileURLWithPath: notReport))
        let page = folder.path("page.html")
        for (input, reason) in [(notReport, "not a prune report"), (folder.path("missing.json"), "no such file")] {
            let result = try vitforge(["report", input, "--html", page])
            #expect(result.status != 0)
            #expect(result.stderrLines.count == 1)
            #expect(result.stderr.contains(input) && result.stderr.contains(reason))
            #expect(!FileManager.default.fileExists(atPath: page))
        }
    }
}
