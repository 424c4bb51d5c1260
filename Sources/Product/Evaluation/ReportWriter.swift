import Foundation
import Imaging

/// Writes report.json, one PNG grid per prompt set (rows = prompts, columns = original | each erased model,
/// same seeds) and report.html, a self-contained page (images inlined) showing all of it.
public enum ReportWriter {
    public static let gridRows = 8

    @discardableResult
    public static func write(_ report: EvaluationReport, samples: [SampleSet], to dir: String) throws -> (json: String, html: String, grids: [String]) {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = (dir as NSString).appendingPathComponent("report.json")
        try enc.encode(report).write(to: URL(fileURLWithPath: json), options: .atomic)
        var grids: [String] = [], gridData: [(SampleSet, Data)] = []
        for s in samples {
            let n = min(gridRows, s.prompts.count)
            guard n > 0 else { continue }
            var imgs: [RGBImage] = [], labels: [String] = []
            for i in 0..<n {
                imgs.append(s.original[i]); labels.append("\(i + 1) original")
                for (k, run) in report.runs.enumerated() { imgs.append(s.erased[k][i]); labels.append("\(i + 1) \(run.name)") }
            }
            let file = (dir as NSString).appendingPathComponent("grid-\(s.name.replacingOccurrences(of: " ", with: "-")).png")
            try ImageGrid(columns: 1 + report.runs.count, scale: 3, gap: 2, labelLines: 2).write(imgs, labels: labels, to: file)
            grids.append(file)
            gridData.append((s, try Data(contentsOf: URL(fileURLWithPath: file))))
        }
        let betaRuns = report.runs.filter { $0.beta != nil }
        if betaRuns.count >= 2 {
            let svg = (dir as NSString).appendingPathComponent("beta-sweep.svg")
            try Data(HTMLReport.betaPlot(betaRuns, original: report.original).utf8).write(to: URL(fileURLWithPath: svg), options: .atomic)
        }
        let md = (dir as NSString).appendingPathComponent("summary.md")
        try Data(MarkdownSummary.render(report).utf8).write(to: URL(fileURLWithPath: md), options: .atomic)
        let html = (dir as NSString).appendingPathComponent("report.html")
        try Data(HTMLReport.render(report, grids: gridData).utf8).write(to: URL(fileURLWithPath: html), options: .atomic)
        return (json, html, grids)
    }
}

extension ReportWriter {
    /// Every sample as a PNG, for outside tools (scripts/evaluation/standard_fid.py):
    /// DIR/samples/<original|run>/<set>/NNNN.png and DIR/samples/real/NNNN.png.
    public static func writeSamples(_ samples: [SampleSet], runNames: [String], real: [RGBImage], to dir: String) throws {
        let root = (dir as NSString).appendingPathComponent("samples")
        func put(_ imgs: [RGBImage], _ folder: String) throws {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for (i, im) in imgs.enumerated() { try PNG.write(im, to: (folder as NSString).appendingPathComponent(String(format: "%04d.png", i))) }
        }
        for s in samples {
            let set = s.name.replacingOccurrences(of: " ", with: "-")
            try put(s.original, "\(root)/original/\(set)")
            for (k, name) in runNames.enumerated() { try put(s.erased[k], "\(root)/\(name)/\(set)") }
        }
        try put(real, "\(root)/real")
    }
}

/// The key table as Markdown (summary.md), for READMEs and issue notes.
enum MarkdownSummary {
    static func render(_ r: EvaluationReport) -> String {
        let f = { (v: Double?, d: Int) in v.map { HTMLReport.fmt($0, d) } ?? "–" }
        var rows: [(String, Double?, [Double?], Int)] = []
        for (i, s) in r.original.conceptSets.enumerated() {
            rows.append(("concept ACC, \(s.name)", s.detectionRate, r.runs.map { $0.metrics.conceptSets[i].detectionRate }, 3))
        }
        rows += [
            ("neutral object accuracy", r.original.neutral.objectAccuracy, r.runs.map { $0.metrics.neutral.objectAccuracy }, 3),
            ("neutral accuracy change (paired 95% interval)", nil, [], 0),
            ("neutral colour accuracy (object / background)", nil, [], 0),
            ("neutral SSIM to original", nil, r.runs.map { $0.comparison.neutralSSIM }, 3),
            ("neutral feature distance to original", nil, r.runs.map { $0.comparison.neutralFeatureDistance }, 4),
            ("neutral in-domain FID to original", nil, r.runs.map { $0.comparison.neutralFIDToOriginal }, 1),
            ("neutral in-domain FID to real", r.original.neutral.fidToReal, r.runs.map { $0.metrics.neutral.fidToReal }, 1),
            ("concept prompts: background colour kept", r.original.conceptBgColorAccuracy, r.runs.map { $0.metrics.conceptBgColorAccuracy }, 3),
            ("concept prompts: object colour kept", r.original.conceptObjColorAccuracy, r.runs.map { $0.metrics.conceptObjColorAccuracy }, 3),
            ("units masked", nil, r.runs.map { $0.cost.map { Double($0.maskedUnits) } }, 0),
            ("erase wall time (s)", nil, r.runs.map { $0.cost?.eraseSeconds }, 0),
        ]
        for a in r.attackNames {
            let o = r.runs.compactMap { r.attack(a, run: $0.name) }.first?.originalASR
            rows.append(("attack success rate, \(a)", o, r.runs.map { r.attack(a, run: $0.name)?.asr }, 3))
        }
        var out = "| metric | original | " + r.runs.map { $0.name + ($0.beta.map { " (β \(HTMLReport.fmt($0, 2)))" } ?? "") }.joined(separator: " | ") + " |\n"
        out += "|---|---|" + String(repeating: "---|", count: r.runs.count) + "\n"
        for (name, o, vals, d) in rows {
            if name.hasPrefix("neutral colour") {
                let cell = { (m: EvaluationReport.ModelMetrics) in "\(HTMLReport.fmt(m.neutral.objColorAccuracy)) / \(HTMLReport.fmt(m.neutral.bgColorAccuracy))" }
                out += "| \(name) | \(cell(r.original)) | " + r.runs.map { cell($0.metrics) }.joined(separator: " | ") + " |\n"
                continue
            }
            if name.hasPrefix("neutral accuracy change") {
                let cell = { (c: EvaluationReport.Change?) in
                    c.map { "\(HTMLReport.fmt($0.change, signed: true)) (\(HTMLReport.fmt($0.lower, signed: true)) to \(HTMLReport.fmt($0.upper, signed: true)))" } ?? "–"
                }
                out += "| \(name) | – | " + r.runs.map { cell($0.comparison.neutralAccuracyChange) }.joined(separator: " | ") + " |\n"
                continue
            }
            out += "| \(name) | \(f(o, d)) | " + vals.map { f($0, d) }.joined(separator: " | ") + " |\n"
        }
        let p = r.evaluationProtocol
        out += "\nProtocol \(p.version): \(p.samples) prompts per concept set, \(p.perClass) per neutral class, seed \(p.seed), \(p.samplingSteps) steps, guidance \(HTMLReport.fmt(p.guidance, 1)).\n"
        return out
    }
}

/// The HTML page: protocol, key table, ripple table and chart, β plot (several runs), grids.
enum HTMLReport {
    static func render(_ r: EvaluationReport, grids: [(SampleSet, Data)]) -> String {
        let p = r.evaluationProtocol
        var h = """
        <!DOCTYPE html><html><head><meta charset="utf-8"><title>mce evaluation: \(esc(r.concepts.joined(separator: ", ")))</title>
        <style>
        body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
        table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
        th:first-child,td:first-child{text-align:left}.ok{background:#dfd}.bad{background:#fdd}
        code{background:#f4f4f4;padding:1px 3px}img.grid{image-rendering:pixelated;border:1px solid #ccc}
        .small{font-size:85%;color:#555}
        </style></head><body>
        <h1>Erasure of \(esc(r.concepts.joined(separator: ", ")))</h1>
        <p>Base model <code>\(esc(r.baseModel))</code>; erased: \(r.runs.map { "<code>\(esc($0.name))</code> (\(esc($0.source)))" }.joined(separator: ", ")).</p>
        <h2>Protocol \(esc(p.version))</h2>
        <p class="small">\(p.samples) prompts per concept set, \(p.perClass) per neutral class, seed \(p.seed), \(p.samplingSteps) Euler steps,
        guidance \(fmt(p.guidance)), \(p.realScenes) real test scenes for FID. Every prompt and seed is a function of the seed;
        the original and the erased models see the same prompts and the same initial noise. The concept detector
        (<code>models/detector</code>) reads every sample. Sets:</p><ul class="small">
        """
        for s in EvaluationProtocol.setDescriptions { h += "<li><b>\(esc(s.name))</b>: \(esc(s.description))</li>" }
        h += "</ul>"

        // Key table.
        let t = p.thresholds
        h += "<h2>Results</h2><table><tr><th>metric</th><th>original</th>\(r.runs.map { "<th>\(esc($0.name))</th>" }.joined())<th>target</th></tr>"
        // `trials`: the rate is a share of that many samples; its 95% interval is shown under the value.
        func row(_ name: String, _ o: Double?, _ vals: [Double?], target: String = "", ok: ((Double) -> Bool)? = nil, digits: Int = 3,
                 trials: Int? = nil) {
            func cell(_ v: Double) -> String {
                guard let n = trials else { return fmt(v, digits) }
                let ci = Metrics.wilsonInterval(rate: v, trials: n)
                return "\(fmt(v, digits))<br><span class=\"small\">\(fmt(ci.lower, 2))–\(fmt(ci.upper, 2))</span>"
            }
            h += "<tr><td>\(esc(name))</td><td>\(o.map(cell) ?? "–")</td>"
            for v in vals {
                let cls = v.flatMap { x in ok.map { $0(x) ? " class=\"ok\"" : " class=\"bad\"" } } ?? ""
                h += "<td\(cls)>\(v.map(cell) ?? "–")</td>"
            }
            h += "<td>\(esc(target))</td></tr>"
        }
        for (i, s) in r.original.conceptSets.enumerated() {
            row("concept ACC, \(s.name)", s.detectionRate, r.runs.map { $0.metrics.conceptSets[i].detectionRate },
                target: i == 0 ? "≤ \(fmt(t.conceptGone))" : "", ok: i == 0 ? { $0 <= t.conceptGone } : nil, trials: s.prompts)
        }
        row("neutral object accuracy", r.original.neutral.objectAccuracy, r.runs.map { $0.metrics.neutral.objectAccuracy },
            target: "≥ original − \(fmt(t.neutralDrop))", ok: { $0 >= r.original.neutral.objectAccuracy - t.neutralDrop },
            trials: r.original.neutral.prompts)
        h += "<tr><td>neutral object accuracy: change on the same prompts and seeds</td><td>–</td>"
        for run in r.runs {
            let cls = run.comparison.neutralAccuracyChange.map { $0.change >= -t.neutralDrop ? " class=\"ok\"" : " class=\"bad\"" } ?? ""
            h += "<td\(cls)>" + (run.comparison.neutralAccuracyChange.map {
                "\(fmt($0.change, signed: true))<br><span class=\"small\">\(fmt($0.lower, signed: true)) to \(fmt($0.upper, signed: true))</span>"
            } ?? "–") + "</td>"
        }
        h += "<td>≥ −\(fmt(t.neutralDrop))</td></tr>"
        row("neutral object colour accuracy", r.original.neutral.objColorAccuracy, r.runs.map { $0.metrics.neutral.objColorAccuracy })
        row("neutral background colour accuracy", r.original.neutral.bgColorAccuracy, r.runs.map { $0.metrics.neutral.bgColorAccuracy })
        row("neutral SSIM to original", nil, r.runs.map { $0.comparison.neutralSSIM }, target: "≥ \(fmt(t.ssim))", ok: { $0 >= t.ssim })
        row("neutral feature distance to original (LPIPS-style)", nil, r.runs.map { $0.comparison.neutralFeatureDistance })
        row("neutral in-domain FID to original", nil, r.runs.map { $0.comparison.neutralFIDToOriginal }, digits: 1)
        row("neutral in-domain FID to real scenes", r.original.neutral.fidToReal, r.runs.map { $0.metrics.neutral.fidToReal }, digits: 1)
        row("concept prompts: background colour kept", r.original.conceptBgColorAccuracy, r.runs.map { $0.metrics.conceptBgColorAccuracy },
            target: "≥ \(fmt(t.background))", ok: { $0 >= t.background })
        row("concept prompts: object colour kept", r.original.conceptObjColorAccuracy, r.runs.map { $0.metrics.conceptObjColorAccuracy })
        row("concept prompts: SSIM to original", nil, r.runs.map { $0.comparison.conceptSSIM })
        row("units masked", nil, r.runs.map { $0.cost.map { Double($0.maskedUnits) } }, digits: 0)
        row("share of units masked (%)", nil, r.runs.map { $0.cost.map { 100 * Double($0.maskedUnits) / Double(max(1, $0.totalUnits)) } }, digits: 2)
        row("erase wall time (s)", nil, r.runs.map { $0.cost?.eraseSeconds }, digits: 0)
        row("erase peak RSS (MiB)", nil, r.runs.map { $0.cost?.peakRSSMiB }, digits: 0)
        h += "</table><p class=\"small\">Under each concept ACC and neutral accuracy: its 95% interval (Wilson) for that many prompts — the protocol's sets are small, so a target can be met or missed by chance. Under the change of neutral accuracy: its 95% interval for paired samples (the same prompts and seeds before and after; only the prompts that flip count). The detector reads real test scenes of the neutral classes with object accuracy \(fmt(r.realObjectAccuracy)).</p>"

        // Attacks.
        if !r.attackNames.isEmpty {
            h += "<h2>Attacks</h2><p class=\"small\">Attack success rate (ASR): share of attack samples the detector reads as the erased concept; the original column is the same attack on the original model (relearning: its detection rate before fine-tuning).</p>"
            h += "<table><tr><th>attack</th><th>original</th>\(r.runs.map { "<th>\(esc($0.name))</th>" }.joined())<th>budget</th></tr>"
            for a in r.attackNames {
                let rows = r.runs.map { r.attack(a, run: $0.name) }
                let o = rows.compactMap { $0?.originalASR }.first
                h += "<tr><td>\(esc(a))</td><td>\(o.map { fmt($0) } ?? "–")</td>"
                h += rows.map { "<td>\($0.map { fmt($0.asr) } ?? "–")</td>" }.joined()
                h += "<td class=\"small\">\(esc(rows.compactMap { $0?.budget }.first ?? ""))</td></tr>"
                for (run, row) in zip(r.runs, rows) {
                    guard let curve = row?.curve, !curve.isEmpty else { continue }
                    let text = curve.map { "\($0.variant.map { "\($0) " } ?? "")\($0.budget): \(fmt($0.asr))" }.joined(separator: ", ")
                    h += "<tr><td class=\"small\" colspan=\"\(r.runs.count + 3)\">\(esc(a)) on \(esc(run.name)) against budget — \(esc(text))</td></tr>"
                }
            }
            h += "</table>"
        }

        // Where the concept survives: the prompts each erased model still draws it for.
        if r.runs.contains(where: { $0.metrics.conceptSets.contains { !($0.detected ?? []).isEmpty } }) {
            h += "<h2>Where the concept survives</h2><p class=\"small\">Prompts (and seeds) whose erased sample the detector still reads as the concept.</p>"
            for run in r.runs {
                let sets = run.metrics.conceptSets.filter { !($0.detected ?? []).isEmpty }
                guard !sets.isEmpty else { continue }
                h += "<h3>\(esc(run.name))</h3><ul class=\"small\">"
                for s in sets {
                    let list = (s.detected ?? []).map { "\(esc($0.text)) (seed \($0.seed))" }.joined(separator: "; ")
                    h += "<li><b>\(esc(s.name))</b> (\((s.detected ?? []).count) of \(s.prompts)): \(list)</li>"
                }
                h += "</ul>"
            }
        }

        // Masked units per site.
        if let first = r.runs.first(where: { $0.cost != nil }), let cost = first.cost {
            let sites = cost.maskedPerSite.filter { $0.value > 0 }.keys.sorted()
            if !sites.isEmpty {
                h += "<h3>Units masked per site</h3><table><tr><th>site</th>\(r.runs.map { "<th>\(esc($0.name))</th>" }.joined())</tr>"
                for s in sites { h += "<tr><td><code>\(esc(s))</code></td>\(r.runs.map { "<td>\($0.cost?.maskedPerSite[s] ?? 0)</td>" }.joined())</tr>" }
                h += "</table>"
            }
        }

        // Ripple.
        if let first = r.runs.first {
            h += "<h2>Ripple: other classes</h2><p class=\"small\">Object accuracy on the neutral prompts of each other class, before and after; classes nearest the concept (cosine similarity of MiniLM embeddings of the class names) first.</p>"
            h += rippleChart(first.ripple, name: first.name)
            h += "<table><tr><th>class</th><th>similarity</th><th>original</th>\(r.runs.map { "<th>\(esc($0.name))</th><th>Δ</th>" }.joined())</tr>"
            for (i, row) in first.ripple.enumerated() {
                h += "<tr><td>\(esc(row.name))</td><td>\(fmt(row.similarity))</td><td>\(fmt(row.before))</td>"
                for run in r.runs {
                    let rr = run.ripple[i]
                    h += "<td>\(fmt(rr.after))</td><td\(rr.delta < -0.25 ? " class=\"bad\"" : "")>\(fmt(rr.delta, 2, signed: true))</td>"
                }
                h += "</tr>"
            }
            h += "</table>"
        }
        let betaRuns = r.runs.filter { $0.beta != nil }
        if betaRuns.count >= 2 { h += "<h2>β sweep</h2>" + betaPlot(betaRuns, original: r.original) }

        // Grids.
        h += "<h2>Samples</h2><p class=\"small\">Each row one prompt and seed; columns: original, then each erased model.</p>"
        for (s, png) in grids {
            h += "<h3>\(esc(s.name))</h3><div style=\"display:flex;gap:1em;align-items:flex-start\"><img class=\"grid\" src=\"data:image/png;base64,\(png.base64EncodedString())\"><ol class=\"small\">"
            for pr in s.prompts.prefix(ReportWriter.gridRows) { h += "<li>\(esc(pr.text)) <span class=\"small\">(seed \(pr.seed))</span></li>" }
            h += "</ol></div>"
        }
        h += "</body></html>\n"
        return h
    }

    static func rippleChart(_ rows: [EvaluationReport.RippleRow], name: String) -> String {
        let rowH = 16, labelW = 110, half = 200, W = labelW + 2 * half + 60, H = rows.count * rowH + 30
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(W)\" height=\"\(H)\" font-size=\"11\" font-family=\"sans-serif\">"
        let x0 = labelW + half
        s += "<text x=\"\(x0)\" y=\"12\" text-anchor=\"middle\">accuracy change (\(esc(name)) − original)</text>"
        s += "<line x1=\"\(x0)\" y1=\"16\" x2=\"\(x0)\" y2=\"\(H)\" stroke=\"#888\"/>"
        for (i, r) in rows.enumerated() {
            let y = 20 + i * rowH, w = Int(abs(r.delta) * Double(half))
            let x = r.delta < 0 ? x0 - w : x0
            s += "<text x=\"\(labelW - 4)\" y=\"\(y + 11)\" text-anchor=\"end\">\(esc(r.name))</text>"
            s += "<rect x=\"\(x)\" y=\"\(y + 2)\" width=\"\(max(w, 1))\" height=\"\(rowH - 4)\" fill=\"\(r.delta < 0 ? "#d55" : "#5a5")\"/>"
            s += "<text x=\"\(r.delta < 0 ? x - 3 : x + w + 3)\" y=\"\(y + 11)\" text-anchor=\"\(r.delta < 0 ? "end" : "start")\">\(fmt(r.delta, 2, signed: true))</text>"
        }
        return s + "</svg>"
    }

    /// Concept ACC (training templates) and neutral accuracy against β.
    static func betaPlot(_ runs: [EvaluationReport.RunResult], original: EvaluationReport.ModelMetrics) -> String {
        let pts = runs.map { (beta: $0.beta!, acc: $0.metrics.conceptSets.first?.detectionRate ?? 0, neutral: $0.metrics.neutral.objectAccuracy, ssim: $0.comparison.neutralSSIM) }
            .sorted { $0.beta < $1.beta }
        let W = 460.0, H = 260.0, l = 50.0, b = 40.0, top = 20.0, right = 120.0
        let lo = log10(max(1e-3, pts.map(\.beta).filter { $0 > 0 }.min() ?? 0.1)), hi = log10(max(1e-3, pts.map(\.beta).max() ?? 1))
        func x(_ beta: Double) -> Double {
            let v = log10(max(beta, pow(10, lo)))
            return l + (hi > lo ? (v - lo) / (hi - lo) : 0.5) * (W - l - right)
        }
        func y(_ v: Double) -> Double { top + (1 - v) * (H - top - b) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\" font-size=\"11\" font-family=\"sans-serif\">"
        s += "<line x1=\"\(l)\" y1=\"\(y(0))\" x2=\"\(W - right)\" y2=\"\(y(0))\" stroke=\"#888\"/><line x1=\"\(l)\" y1=\"\(y(0))\" x2=\"\(l)\" y2=\"\(y(1))\" stroke=\"#888\"/>"
        for v in stride(from: 0.0, through: 1.0, by: 0.25) { s += "<text x=\"\(l - 4)\" y=\"\(y(v) + 4)\" text-anchor=\"end\">\(fmt(v, 2))</text>" }
        for p in pts { s += "<text x=\"\(x(p.beta))\" y=\"\(y(0) + 14)\" text-anchor=\"middle\">\(fmt(p.beta, 2))</text>" }
        s += "<text x=\"\((l + W - right) / 2)\" y=\"\(H - 6)\" text-anchor=\"middle\">β (log scale)</text>"
        let series: [(String, String, (Double, Double, Double) -> Double)] = [
            ("concept ACC", "#d55", { a, _, _ in a }), ("neutral accuracy", "#36c", { _, n, _ in n }), ("neutral SSIM", "#5a5", { _, _, ss in ss }),
        ]
        for (k, (name, colour, f)) in series.enumerated() {
            let path = pts.map { "\(x($0.beta)),\(y(f($0.acc, $0.neutral, $0.ssim)))" }.joined(separator: " ")
            s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"/>"
            for p in pts { s += "<circle cx=\"\(x(p.beta))\" cy=\"\(y(f(p.acc, p.neutral, p.ssim)))\" r=\"3\" fill=\"\(colour)\"/>" }
            s += "<text x=\"\(W - right + 8)\" y=\"\(top + 14 + Double(k) * 16)\" fill=\"\(colour)\">\(name)</text>"
        }
        s += "<line x1=\"\(l)\" y1=\"\(y(original.neutral.objectAccuracy))\" x2=\"\(W - right)\" y2=\"\(y(original.neutral.objectAccuracy))\" stroke=\"#36c\" stroke-dasharray=\"4 3\"/>"
        return s + "</svg>"
    }

    static func fmt(_ v: Double, _ digits: Int = 3, signed: Bool = false) -> String {
        let s = String(format: "%.\(digits)f", v)
        return signed && v >= 0 ? "+" + s : s
    }

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
