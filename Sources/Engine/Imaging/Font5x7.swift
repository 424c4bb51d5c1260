/// A built-in 5×7 bitmap font for grid labels (a font is data, not a codec): digits, capital letters and
/// common punctuation. Lower-case letters are drawn as capitals; characters without a glyph draw as "?".
/// Each glyph is 7 rows of 5 columns, "#" = ink. A character cell is 6×8 (1 px spacing).
public enum Font5x7 {
    public static let glyphWidth = 5, glyphHeight = 7, advance = 6, lineHeight = 8

    static let glyphs: [Character: [String]] = [
        " ": ["     ", "     ", "     ", "     ", "     ", "     ", "     "],
        "A": [" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
        "B": ["#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "],
        "C": [" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "],
        "D": ["#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "],
        "E": ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"],
        "F": ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "],
        "G": [" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"],
        "H": ["#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
        "I": [" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
        "J": ["  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "],
        "K": ["#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"],
        "L": ["#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"],
        "M": ["#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"],
        "N": ["#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"],
        "O": [" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
        "P": ["#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "],
        "Q": [" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"],
        "R": ["#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"],
        "S": [" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "],
        "T": ["#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "],
        "U": ["#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
        "V": ["#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "],
        "W": ["#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "],
        "X": ["#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"],
        "Y": ["#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "],
        "Z": ["#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"],
        "0": [" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "],
        "1": ["  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
        "2": [" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"],
        "3": ["#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "],
        "4": ["   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "],
        "5": ["#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "],
        "6": ["  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "],
        "7": ["#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "],
        "8": [" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "],
        "9": [" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "],
        ".": ["     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "],
        ",": ["     ", "     ", "     ", "     ", " ##  ", "  #  ", " #   "],
        ":": ["     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "],
        ";": ["     ", " ##  ", " ##  ", "     ", " ##  ", "  #  ", " #   "],
        "-": ["     ", "     ", "     ", "#####", "     ", "     ", "     "],
        "+": ["     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "],
        "=": ["     ", "     ", "#####", "     ", "#####", "     ", "     "],
        "_": ["     ", "     ", "     ", "     ", "     ", "     ", "#####"],
        "/": ["     ", "    #", "   # ", "  #  ", " #   ", "#    ", "     "],
        "'": [" ##  ", "  #  ", " #   ", "     ", "     ", "     ", "     "],
        "\"": [" # # ", " # # ", "     ", "     ", "     ", "     ", "     "],
        "!": ["  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "     ", "  #  "],
        "?": [" ### ", "#   #", "    #", "   # ", "  #  ", "     ", "  #  "],
        "(": ["   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "],
        ")": [" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "],
        "[": [" ### ", " #   ", " #   ", " #   ", " #   ", " #   ", " ### "],
        "]": [" ### ", "   # ", "   # ", "   # ", "   # ", "   # ", " ### "],
        "<": ["   # ", "  #  ", " #   ", "#    ", " #   ", "  #  ", "   # "],
        ">": [" #   ", "  #  ", "   # ", "    #", "   # ", "  #  ", " #   "],
        "%": ["##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##"],
        "#": [" # # ", " # # ", "#####", " # # ", "#####", " # # ", " # # "],
        "*": ["     ", "  #  ", "# # #", " ### ", "# # #", "  #  ", "     "],
        "&": [" ##  ", "#  # ", "# #  ", " #   ", "# # #", "#  # ", " ## #"],
        "|": ["  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "],
        "×": ["     ", "#   #", " # # ", "  #  ", " # # ", "#   #", "     "],
    ]

    /// The 7 rows of a character's glyph.
    public static func glyph(_ ch: Character) -> [String] {
        let up = Character(String(ch).uppercased())
        return glyphs[up] ?? glyphs["?"]!
    }

    /// Width in pixels of a one-line string.
    public static func width(of text: String) -> Int { text.isEmpty ? 0 : text.count * advance - 1 }

    /// Draws one line with its top-left at (x, y), clipped to the image.
    public static func draw(_ text: String, into img: inout RGBImage, x: Int, y: Int, color: (Float, Float, Float)) {
        let col = [color.0, color.1, color.2]
        for (k, ch) in text.enumerated() {
            let g = glyph(ch)
            for (r, row) in g.enumerated() {
                for (c, px) in row.enumerated() where px == "#" {
                    let xx = x + k * advance + c, yy = y + r
                    guard xx >= 0, xx < img.width, yy >= 0, yy < img.height else { continue }
                    for ch in 0..<3 { img[ch, yy, xx] = col[ch] }
                }
            }
        }
    }

    /// Greedy word wrap into lines of at most `maxChars` characters (a longer word is cut), at most `maxLines`
    /// lines; an overflowing last line ends in "..".
    public static func wrap(_ text: String, maxChars: Int, maxLines: Int) -> [String] {
        guard maxChars > 0, maxLines > 0 else { return [] }
        var lines = [String](), cur = ""
        for word in text.split(separator: " ").map(String.init) {
            var w = word
            while w.count > maxChars {  // hard-cut long words
                if !cur.isEmpty { lines.append(cur); cur = "" }
                lines.append(String(w.prefix(maxChars)))
                w = String(w.dropFirst(maxChars))
            }
            if cur.isEmpty { cur = w } else if cur.count + 1 + w.count <= maxChars { cur += " " + w } else { lines.append(cur); cur = w }
        }
        if !cur.isEmpty { lines.append(cur) }
        if lines.count > maxLines {
            lines = Array(lines.prefix(maxLines))
            var last = lines[maxLines - 1]
            if last.count + 2 > maxChars { last = String(last.prefix(max(0, maxChars - 2))) }
            lines[maxLines - 1] = last + ".."
        }
        return lines
    }
}
