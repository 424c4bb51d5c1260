/// One way of naming a class in a caption.
public struct Synonym: Hashable, Sendable {
    public let text: String
    /// A plural-only noun ("trousers"): takes no indefinite article.
    public let plural: Bool
    /// Never used in training captions; kept to test whether an erased concept comes back under other words.
    public let heldOut: Bool

    public init(_ text: String, plural: Bool = false, heldOut: Bool = false) {
        self.text = text
        self.plural = plural
        self.heldOut = heldOut
    }
}

public enum SourceDataset: String, Sendable {
    case fashionMNIST = "Fashion-MNIST"
    case animalMNIST = "Animal-MNIST"
}

/// One of the world's 20 nameable concepts.
public struct ConceptClass: Sendable {
    /// 0..<20: Fashion-MNIST labels 0–9 are ids 0–9, Animal-MNIST labels 0–9 are ids 10–19.
    public let id: Int
    /// Short canonical name (also the first training synonym).
    public let name: String
    public let source: SourceDataset
    public let sourceLabel: Int
    /// Training synonyms first, then held-out ones; `Caption.synonym` indexes this list.
    public let synonyms: [Synonym]

    public var trainSynonyms: [Synonym] { synonyms.filter { !$0.heldOut } }
    public var heldOutSynonyms: [Synonym] { synonyms.filter { $0.heldOut } }
    /// Indices into `synonyms`.
    public var trainSynonymIndices: [Int] { synonyms.indices.filter { !synonyms[$0].heldOut } }
    public var heldOutSynonymIndices: [Int] { synonyms.indices.filter { synonyms[$0].heldOut } }
}

/// A named colour of the palette, in sRGB bytes.
public struct NamedColor: Hashable, Sendable {
    public let name: String
    public let r: UInt8, g: UInt8, b: UInt8

    public init(_ name: String, _ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.name = name
        self.r = r
        self.g = g
        self.b = b
    }

    /// (r, g, b) in [0, 1].
    public var rgb: (Float, Float, Float) { (Float(r) / 255, Float(g) / 255, Float(b) / 255) }

    /// Euclidean distance in RGB bytes.
    public func distance(to o: NamedColor) -> Double {
        let dr = Double(r) - Double(o.r), dg = Double(g) - Double(o.g), db = Double(b) - Double(o.b)
        return (dr * dr + dg * dg + db * db).squareRoot()
    }
}

/// The world's words: 20 classes with training and held-out synonyms, and the colour palette.
/// Synonyms avoid colour words and the templates' words, so a caption names one class and two colours;
/// a phrase may contain another class's word ("tee shirt" / "shirt", as "t-shirt" does), which the
/// longest-match rule of `CaptionGrammar.deconcept` resolves. Most are single tokens of BERT's uncased WordPiece vocabulary (MiniLM's); a few split into
/// word pieces (giraffe, sneaker, pullover, sandal, feline…), which the encoder handles.
public enum Vocabulary {
    private static func s(_ t: String..., plural: Bool = false) -> [Synonym] { t.map { Synonym($0, plural: plural) } }
    private static func h(_ t: String..., plural: Bool = false) -> [Synonym] { t.map { Synonym($0, plural: plural, heldOut: true) } }

    public static let classes: [ConceptClass] = {
        let table: [(String, SourceDataset, [Synonym])] = [
            // Fashion-MNIST, labels 0–9
            ("t-shirt", .fashionMNIST, s("t-shirt", "tee", "top") + h("tee shirt", "jersey")),
            ("trousers", .fashionMNIST, s("trousers", "pants", "slacks", plural: true) + h("jeans", "chinos", plural: true)),
            ("pullover", .fashionMNIST, s("pullover", "sweater", "jumper") + h("sweatshirt", "cardigan")),
            ("dress", .fashionMNIST, s("dress", "gown") + h("frock", "sundress")),
            ("coat", .fashionMNIST, s("coat", "jacket", "overcoat") + h("parka", "raincoat")),
            ("sandal", .fashionMNIST, s("sandal", "flip-flop") + h("open-toed shoe", "slipper")),
            ("shirt", .fashionMNIST, s("shirt", "blouse") + h("button-down", "collared shirt")),
            ("sneaker", .fashionMNIST, s("sneaker", "trainer") + h("running shoe", "tennis shoe")),
            ("bag", .fashionMNIST, s("bag", "handbag", "purse") + h("satchel", "tote")),
            ("ankle boot", .fashionMNIST, s("ankle boot", "boot") + h("bootie", "chelsea boot")),
            // Animal-MNIST, labels 0–9
            ("bear", .animalMNIST, s("bear", "grizzly") + h("bruin", "polar bear")),
            ("bird", .animalMNIST, s("bird", "songbird", "sparrow") + h("fowl", "finch")),
            ("cat", .animalMNIST, s("cat", "kitten", "kitty") + h("feline", "tomcat")),
            ("cow", .animalMNIST, s("cow", "bull", "calf") + h("heifer", "ox")),
            ("dog", .animalMNIST, s("dog", "puppy", "hound") + h("canine", "pooch")),
            ("elephant", .animalMNIST, s("elephant", "tusker") + h("pachyderm", "mammoth")),
            ("giraffe", .animalMNIST, s("giraffe", "camelopard") + h("long-necked animal", "okapi")),
            ("horse", .animalMNIST, s("horse", "pony", "stallion") + h("mare", "steed")),
            ("sheep", .animalMNIST, s("sheep", "lamb", "ewe") + h("ram", "woolly animal")),
            ("zebra", .animalMNIST, s("zebra", "plains zebra") + h("quagga", "striped equine")),
        ]
        return table.enumerated().map { i, e in
            ConceptClass(id: i, name: e.0, source: e.1, sourceLabel: i % 10, synonyms: e.2)
        }
    }()

    public static var classCount: Int { classes.count }

    /// The class id of a data set's label.
    public static func classID(source: SourceDataset, label: Int) -> Int {
        source == .fashionMNIST ? label : 10 + label
    }

    public static func classID(named name: String) -> Int? {
        let n = name.lowercased()
        return classes.first { $0.name == n }?.id
    }

    /// 12 colours chosen to stay apart after tinting; see `allowedPair`.
    public static let colors: [NamedColor] = [
        NamedColor("red", 220, 40, 40),
        NamedColor("green", 40, 170, 60),
        NamedColor("blue", 40, 80, 220),
        NamedColor("yellow", 240, 220, 40),
        NamedColor("orange", 245, 140, 20),
        NamedColor("purple", 140, 60, 180),
        NamedColor("pink", 250, 150, 200),
        NamedColor("white", 245, 245, 245),
        NamedColor("black", 15, 15, 15),
        NamedColor("gray", 128, 128, 128),
        NamedColor("brown", 130, 80, 30),
        NamedColor("cyan", 40, 210, 220),
    ]

    public static func colorIndex(named name: String) -> Int? { colors.firstIndex { $0.name == name.lowercased() } }

    /// Minimum RGB distance between object and background colours of a scene.
    public static let minColorDistance = 100.0

    /// Object colour `o` may sit on background `b`: different colours at least `minColorDistance` apart
    /// (this drops near pairs such as orange/yellow and red/brown).
    public static func allowedPair(object o: Int, background b: Int) -> Bool {
        o != b && colors[o].distance(to: colors[b]) >= minColorDistance
    }

    /// All allowed (object, background) pairs, in row-major order.
    public static let colorPairs: [(object: Int, background: Int)] = {
        var p = [(object: Int, background: Int)]()
        for o in colors.indices { for b in colors.indices where allowedPair(object: o, background: b) { p.append((o, b)) } }
        return p
    }()
}
