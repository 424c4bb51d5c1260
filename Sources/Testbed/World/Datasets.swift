import Foundation

public enum Split: String, Sendable, CaseIterable {
    case train, test
}

/// Where the datasets live: `$MCE_DATA`, else `$MCE_CACHE`, else `$HOME/.cache/mce`
/// (scripts/fetch_datasets.sh resolves the same directory), with
///   fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte
///   animal-mnist/animal-{images-idx3,labels-idx1}-ubyte
public enum DataPaths {
    public static func root(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let d = environment["MCE_DATA"], !d.isEmpty { return d }
        if let d = environment["MCE_CACHE"], !d.isEmpty { return d }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return (home as NSString).appendingPathComponent(".cache/mce")
    }

    public static func fashionMNIST(_ root: String? = nil) -> String {
        ((root ?? self.root()) as NSString).appendingPathComponent("fashion-mnist")
    }

    public static func animalMNIST(_ root: String? = nil) -> String {
        ((root ?? self.root()) as NSString).appendingPathComponent("animal-mnist")
    }
}

/// A set of 28×28 grayscale images (white object on black, uint8) with integer labels.
public struct Dataset: Sendable {
    public static let height = 28
    public static let width = 28
    public static let pixels = 28 * 28

    public let name: String
    public let split: Split
    /// [count, 28, 28] row-major.
    public let images: [UInt8]
    /// [count], values 0..<classNames.count.
    public let labels: [UInt8]
    public let classNames: [String]
    /// For each image, its index in the original file (identity for Fashion-MNIST; the position in the
    /// 10,000-image file for Animal-MNIST).
    public let sourceIndices: [Int]

    public init(name: String, split: Split, images: [UInt8], labels: [UInt8], classNames: [String], sourceIndices: [Int]? = nil) {
        precondition(images.count == labels.count * Dataset.pixels)
        precondition(labels.allSatisfy { Int($0) < classNames.count })
        self.name = name
        self.split = split
        self.images = images
        self.labels = labels
        self.classNames = classNames
        self.sourceIndices = sourceIndices ?? Array(0..<labels.count)
        precondition(self.sourceIndices.count == labels.count)
    }

    public var count: Int { labels.count }

    /// Image i as 784 row-major bytes.
    public func image(_ i: Int) -> ArraySlice<UInt8> {
        images[i * Dataset.pixels ..< (i + 1) * Dataset.pixels]
    }

    public func label(_ i: Int) -> Int { Int(labels[i]) }

    /// Number of images per label.
    public func labelCounts() -> [Int] {
        var c = [Int](repeating: 0, count: classNames.count)
        for l in labels { c[Int(l)] += 1 }
        return c
    }

    /// Indices (into this data set) of the images with label `label`, ascending.
    public func indices(ofLabel label: Int) -> [Int] {
        labels.indices.filter { Int(labels[$0]) == label }
    }

    /// Reads an images/labels pair of IDX files and checks that they agree.
    static func readPair(dataset: String, images ip: String, labels lp: String, classes: Int) throws -> (images: [UInt8], labels: [UInt8]) {
        let im = try IDXArray.read(path: ip, dataset: dataset)
        let lb = try IDXArray.read(path: lp, dataset: dataset)
        guard im.shape.count == 3, im.shape[1] == 28, im.shape[2] == 28 else {
            throw WorldError.badFile(path: ip, reason: "expected images of shape [N, 28, 28], found \(im.shape)")
        }
        guard lb.shape == [im.shape[0]] else {
            throw WorldError.badFile(path: lp, reason: "expected \(im.shape[0]) labels, found shape \(lb.shape)")
        }
        if let bad = lb.data.first(where: { Int($0) >= classes }) {
            throw WorldError.badFile(path: lp, reason: "label \(bad) outside 0..<\(classes)")
        }
        return (im.data, lb.data)
    }
}

/// Fashion-MNIST (Zalando, MIT), from Debian's dataset-fashion-mnist: 60,000 train and 10,000 test images,
/// 6,000 / 1,000 per class; the splits are the data set's own.
public enum FashionMNIST {
    public static let classNames = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]

    public static func files(split: Split, root: String? = nil) -> (images: String, labels: String) {
        let dir = DataPaths.fashionMNIST(root) as NSString
        let p = split == .train ? "train" : "t10k"
        return (dir.appendingPathComponent("\(p)-images-idx3-ubyte"), dir.appendingPathComponent("\(p)-labels-idx1-ubyte"))
    }

    public static func load(split: Split, root: String? = nil) throws -> Dataset {
        let f = files(split: split, root: root)
        let (im, lb) = try Dataset.readPair(dataset: "Fashion-MNIST", images: f.images, labels: f.labels, classes: 10)
        return Dataset(name: "Fashion-MNIST", split: split, images: im, labels: lb, classNames: classNames)
    }
}

/// Animal-MNIST 0.4 (PyPI animal-mnist, MIT): 10,000 silhouettes, 1,000 per class, no split of its own.
///
/// The fixed split: a single `WorldRNG(seed: splitSeed)` shuffles, for class 0, 1, … 9 in turn, the
/// ascending list of that class's file indices (`WorldRNG.shuffle`, Fisher–Yates from the back); the first
/// 800 go to train and the last 200 to test. Each split then lists its images in ascending file order
/// (the file is sorted by class). Train 8,000 images, test 2,000; 800 / 200 per class.
public enum AnimalMNIST {
    public static let classNames = ["Bear", "Bird", "Cat", "Cow", "Dog", "Elephant", "Giraffe", "Horse", "Sheep", "Zebra"]
    public static let splitSeed: UInt64 = 0x414E_494D_414C_5331  // "ANIMALS1"
    public static let trainPerClass = 800

    public static func files(root: String? = nil) -> (images: String, labels: String) {
        let dir = DataPaths.animalMNIST(root) as NSString
        return (dir.appendingPathComponent("animal-images-idx3-ubyte"), dir.appendingPathComponent("animal-labels-idx1-ubyte"))
    }

    /// The file indices of each split, given all labels of the file.
    public static func splitIndices(labels: [UInt8]) -> (train: [Int], test: [Int]) {
        var rng = WorldRNG(seed: splitSeed)
        var train = [Int](), test = [Int]()
        for c in 0..<classNames.count {
            var idx = labels.indices.filter { Int(labels[$0]) == c }
            rng.shuffle(&idx)
            let k = min(trainPerClass, idx.count)
            train += idx[..<k]
            test += idx[k...]
        }
        return (train.sorted(), test.sorted())
    }

    public static func load(split: Split, root: String? = nil) throws -> Dataset {
        let f = files(root: root)
        let (im, lb) = try Dataset.readPair(dataset: "Animal-MNIST", images: f.images, labels: f.labels, classes: 10)
        let s = splitIndices(labels: lb)
        let pick = split == .train ? s.train : s.test
        var images = [UInt8]()
        images.reserveCapacity(pick.count * Dataset.pixels)
        for i in pick { images += im[i * Dataset.pixels ..< (i + 1) * Dataset.pixels] }
        return Dataset(name: "Animal-MNIST", split: split, images: images, labels: pick.map { lb[$0] },
                       classNames: classNames, sourceIndices: pick)
    }
}
