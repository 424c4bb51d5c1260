import XCTest
@testable import World

final class CaptionTests: XCTestCase {
    func words(_ s: String) -> [String] {
        s.lowercased().split { !($0.isLetter || $0 == "-") }.map(String.init)
    }

    func testVocabularyShape() {
        XCTAssertEqual(Vocabulary.classes.count, 20)
        XCTAssertEqual(Vocabulary.classes.map(\.id), Array(0..<20))
        for c in Vocabulary.classes {
            XCTAssertGreaterThanOrEqual(c.trainSynonyms.count, 2, c.name)
            XCTAssertGreaterThanOrEqual(c.heldOutSynonyms.count, 1, c.name)
            XCTAssertEqual(c.synonyms.first?.text, c.name)
            XCTAssertFalse(c.synonyms.first!.heldOut)
            let names = c.source == .fashionMNIST ? FashionMNIST.classNames : AnimalMNIST.classNames
            XCTAssertTrue(names[c.sourceLabel].lowercased().hasPrefix(String(c.name.prefix(3))), "\(c.name) vs \(names[c.sourceLabel])")
        }
        XCTAssertEqual(Vocabulary.classID(source: .animalMNIST, label: 2), Vocabulary.classID(named: "cat"))
        XCTAssertEqual(Vocabulary.classID(source: .fashionMNIST, label: 7), Vocabulary.classID(named: "Sneaker"))
        // Every phrase names one class only, and no phrase uses a colour word.
        let phrases = Vocabulary.classes.flatMap { $0.synonyms.map(\.text) }
        XCTAssertEqual(Set(phrases).count, phrases.count)
        let colorNames = Set(Vocabulary.colors.map(\.name))
        for p in phrases { XCTAssertTrue(Set(words(p)).isDisjoint(with: colorNames), p) }
        XCTAssertGreaterThanOrEqual(Vocabulary.colors.count, 8)
        XCTAssertGreaterThanOrEqual(Vocabulary.colorPairs.count, 100)
        for (o, b) in Vocabulary.colorPairs { XCTAssertNotEqual(o, b) }
        let orange = Vocabulary.colorIndex(named: "orange")!, yellow = Vocabulary.colorIndex(named: "yellow")!
        XCTAssertFalse(Vocabulary.allowedPair(object: orange, background: yellow))
        // Every colour appears as object and as background.
        XCTAssertEqual(Set(Vocabulary.colorPairs.map(\.object)), Set(Vocabulary.colors.indices))
        XCTAssertEqual(Set(Vocabulary.colorPairs.map(\.background)), Set(Vocabulary.colors.indices))
    }

    func testRenderingAndArticles() {
        let sneaker = Vocabulary.classID(named: "sneaker")!, trousers = Vocabulary.classID(named: "trousers")!
        let elephant = Vocabulary.classID(named: "elephant")!, sheep = Vocabulary.classID(named: "sheep")!
        let red = Vocabulary.colorIndex(named: "red")!, blue = Vocabulary.colorIndex(named: "blue")!
        let orange = Vocabulary.colorIndex(named: "orange")!
        XCTAssertEqual(Caption(classID: sneaker, objColor: red, bgColor: blue, template: 0, synonym: 0).text, "a red sneaker on a blue background")
        XCTAssertEqual(Caption(classID: sneaker, objColor: orange, bgColor: blue, template: 0, synonym: 1).text, "an orange trainer on a blue background")
        XCTAssertEqual(Caption(classID: sneaker, objColor: red, bgColor: orange, template: 1, synonym: 0).text, "an orange background with a red sneaker")
        XCTAssertEqual(Caption(classID: trousers, objColor: red, bgColor: blue, template: 0, synonym: 0).text, "red trousers on a blue background")
        XCTAssertEqual(Caption(classID: trousers, objColor: red, bgColor: blue, template: 2, synonym: 1).text, "a photo of red pants, blue background")
        XCTAssertEqual(Caption(classID: elephant, objColor: red, bgColor: blue, template: 6, synonym: 2).text,
                       "an image showing a pachyderm colored red against blue")
        XCTAssertEqual(Caption(classID: elephant, objColor: red, bgColor: blue, template: 6, synonym: 0).text,
                       "an image showing an elephant colored red against blue")
        let ewe = Vocabulary.classes[sheep].synonyms.firstIndex { $0.text == "ewe" }!
        XCTAssertEqual(Caption(classID: sheep, objColor: red, bgColor: blue, template: 8, synonym: ewe).text,
                       "a drawing of a ewe painted red, set on blue")
        for t in CaptionGrammar.templates {
            for c in Vocabulary.classes {
                for s in c.synonyms.indices {
                    let text = Caption(classID: c.id, objColor: red, bgColor: blue, template: t.id, synonym: s).text
                    XCTAssertFalse(text.contains("{") || text.contains("  ") || text.hasPrefix(" ") || text.contains("a a "), text)
                }
            }
        }
    }

    func testHeldOutWordingNeverInTraining() {
        // All training captions of every class with an object colour starting with a vowel or not and every
        // background it may sit on (colour words are fixed and checked not to overlap any phrase above).
        let cat = Vocabulary.classID(named: "cat")!
        XCTAssertEqual(CaptionGrammar.prompts(classID: cat).count, 3 * 6 * Vocabulary.colorPairs.count)
        var train = [Caption]()
        for c in Vocabulary.classes {
            for col in ["orange", "red"] { train += CaptionGrammar.prompts(classID: c.id, objColor: Vocabulary.colorIndex(named: col)!) }
        }
        XCTAssertGreaterThan(train.count, 1000)
        XCTAssertTrue(train.allSatisfy { !$0.heldOut })
        // Words that only held-out templates use never occur in a training caption.
        let trainTemplateWords = Set(CaptionGrammar.templates.filter { !$0.heldOut }.flatMap { words($0.pattern) })
        let heldOutOnly = Set(CaptionGrammar.templates.filter(\.heldOut).flatMap { words($0.pattern) }).subtracting(trainTemplateWords)
            .subtracting(["a", "an", "obj", "color", "bg"])
        XCTAssertFalse(heldOutOnly.isEmpty)
        let heldOutPhrases = Vocabulary.classes.flatMap { $0.heldOutSynonyms.map { $0.text.lowercased() } }
        for cap in train {
            let ws = Set(words(cap.text))
            XCTAssertTrue(ws.isDisjoint(with: heldOutOnly), cap.text)
            for m in CaptionGrammar.mentions(in: cap.text) {
                XCTAssertFalse(heldOutPhrases.contains(m.phrase), "held-out synonym in a training caption: \(cap.text)")
            }
            XCTAssertEqual(CaptionGrammar.mentions(in: cap.text).map(\.classID), [cap.classID], cap.text)
        }
        // Held-out prompts exist for every class and wording.
        for c in Vocabulary.classes {
            for w in CaptionWording.allCases where w != .train {
                let ps = CaptionGrammar.prompts(classID: c.id, objColor: 0, wording: w)
                XCTAssertFalse(ps.isEmpty)
                XCTAssertTrue(ps.allSatisfy { $0.heldOut && $0.objColor == 0 })
                XCTAssertEqual(CaptionGrammar.mentions(in: ps[0].text).map(\.classID), [c.id], ps[0].text)
            }
        }
    }

    func testPromptsEnumeration() {
        let cat = Vocabulary.classID(named: "cat")!
        let red = Vocabulary.colorIndex(named: "red")!, green = Vocabulary.colorIndex(named: "green")!
        let ps = CaptionGrammar.prompts(classID: cat, objColor: red, bgColor: green)
        XCTAssertEqual(ps.count, 6 * 3)
        XCTAssertEqual(Set(ps.map(\.text)).count, ps.count)
        XCTAssertTrue(ps.contains { $0.text == "a red kitten on a green background" })
        let held = CaptionGrammar.prompts(classID: cat, objColor: red, bgColor: green, wording: .heldOutSynonyms)
        XCTAssertTrue(held.contains { $0.text == "a red feline on a green background" })
        XCTAssertEqual(held.count, 6 * 2)
        XCTAssertTrue(CaptionGrammar.prompts(classID: cat, objColor: red, bgColor: red).isEmpty)
    }

    func testDeconcept() {
        let trousers = Vocabulary.classID(named: "trousers")!, elephant = Vocabulary.classID(named: "elephant")!
        let red = Vocabulary.colorIndex(named: "red")!, blue = Vocabulary.colorIndex(named: "blue")!
        XCTAssertEqual(Caption(classID: trousers, objColor: red, bgColor: blue, template: 0, synonym: 1).deconcepted(),
                       "a red object on a blue background")
        XCTAssertEqual(Caption(classID: elephant, objColor: red, bgColor: blue, template: 6, synonym: 0).deconcepted(generic: "thing"),
                       "an image showing a thing colored red against blue")
        XCTAssertEqual(CaptionGrammar.deconcept("an elephant next to a polar bear"), "an object next to an object")
        XCTAssertEqual(CaptionGrammar.deconcept("An Elephant", generic: "thing"), "a thing")
        XCTAssertEqual(CaptionGrammar.deconcept("a tee shirt and a shirt", classes: [Vocabulary.classID(named: "t-shirt")!]),
                       "an object and a shirt")
        XCTAssertEqual(CaptionGrammar.deconcept("a topaz top-hat on top"), "a topaz top-hat on object")
        XCTAssertEqual(CaptionGrammar.deconcept("no concept here"), "no concept here")
        // Every deconcepted training caption names no class.
        for c in Vocabulary.classes {
            for p in CaptionGrammar.prompts(classID: c.id, objColor: red, bgColor: blue, wording: .train)
                + CaptionGrammar.prompts(classID: c.id, objColor: red, bgColor: blue, wording: .heldOutBoth) {
                XCTAssertTrue(CaptionGrammar.mentions(in: p.deconcepted()).isEmpty, p.deconcepted())
                XCTAssertTrue(CaptionGrammar.mentions(in: CaptionGrammar.deconcept(p.text)).isEmpty, p.text)
                XCTAssertTrue(p.deconcepted().contains("object"))
            }
        }
    }
}
