import Erasure
import Flux

// Site maps from the transformer's sites and from text-encoder layers, for building test inputs.
extension Dictionary where Key == MaskSite {
    var sites: [Site: Value] { Dictionary<Site, Value>(uniqueKeysWithValues: map { (Site.transformer($0.key), $0.value) }) }
}

extension Dictionary where Key == Int {
    var textSites: [Site: Value] { Dictionary<Site, Value>(uniqueKeysWithValues: map { (Site.textEncoder(layer: $0.key), $0.value) }) }
}
