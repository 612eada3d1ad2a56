"""Words and wiki-markup text for the demo corpus.

Each subject has its own vocabulary of real English words, with inflected forms
(plurals, -ing, irregular plurals such as ``leaves``) so that the LDA stage's
lemmatiser has work to do. Articles draw words from their subjects' vocabularies
(Zipf-like frequencies inside each), from general background words and from stop
words, and are wrapped in the wiki markup the preprocessing must strip: links,
templates, tables, headings, references, bold/italic, file links and categories.
"""

from __future__ import annotations

import numpy as np

SUBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "ocean": ("ocean", "oceans", "sea", "seas", "wave", "waves", "tide", "tides", "coral", "reef", "reefs",
              "fish", "fishes", "whale", "whales", "dolphin", "dolphins", "shark", "sharks", "salt", "current",
              "currents", "harbour", "sailor", "sailors", "ship", "ships", "coast", "coastline", "beach",
              "beaches", "shell", "shells", "marine", "depth", "depths", "island", "islands", "lagoon", "bay",
              "submarine", "anchor", "anchors", "voyage", "voyages", "seabed", "plankton", "surf"),
    "forest": ("forest", "forests", "tree", "trees", "leaf", "leaves", "oak", "oaks", "pine", "pines", "wood",
               "woods", "woodland", "branch", "branches", "root", "roots", "moss", "fern", "ferns", "timber",
               "canopy", "bark", "deer", "owl", "owls", "squirrel", "squirrels", "mushroom", "mushrooms",
               "seedling", "seedlings", "birch", "maple", "maples", "undergrowth", "lumber", "logging",
               "ranger", "rangers", "trail", "trails", "acorn", "acorns", "grove", "groves", "wildlife"),
    "desert": ("desert", "deserts", "sand", "sands", "dune", "dunes", "camel", "camels", "oasis", "oases",
               "cactus", "cacti", "drought", "droughts", "arid", "heat", "sun", "scorpion", "scorpions",
               "nomad", "nomads", "caravan", "caravans", "mirage", "mirages", "canyon", "canyons", "mesa",
               "plateau", "dust", "sandstorm", "sandstorms", "well", "wells", "lizard", "lizards", "dry",
               "rainfall", "sahara", "gobi", "erosion", "rock", "rocks", "salt", "flat", "flats"),
    "city": ("city", "cities", "street", "streets", "building", "buildings", "tower", "towers", "bridge",
             "bridges", "traffic", "subway", "subways", "skyscraper", "skyscrapers", "mayor", "mayors",
             "district", "districts", "suburb", "suburbs", "avenue", "avenues", "council", "councils",
             "apartment", "apartments", "railway", "station", "stations", "downtown", "urban", "plaza",
             "plazas", "harbour", "highway", "highways", "neighbourhood", "population", "office", "offices",
             "tram", "trams", "parking", "metropolis", "boroughs", "borough"),
    "music": ("music", "song", "songs", "album", "albums", "band", "bands", "guitar", "guitars", "piano",
              "pianos", "singer", "singers", "concert", "concerts", "orchestra", "orchestras", "symphony",
              "symphonies", "melody", "melodies", "chord", "chords", "rhythm", "rhythms", "drum", "drums",
              "violin", "violins", "composer", "composers", "opera", "operas", "record", "recording",
              "recordings", "lyrics", "chorus", "jazz", "tour", "touring", "single", "singles", "tempo",
              "harmony", "harmonies"),
    "sport": ("sport", "sports", "team", "teams", "player", "players", "match", "matches", "goal", "goals",
              "league", "leagues", "season", "seasons", "championship", "championships", "coach", "coaches",
              "stadium", "stadiums", "ball", "balls", "football", "tennis", "cricket", "olympic", "olympics",
              "medal", "medals", "score", "scored", "scoring", "tournament", "tournaments", "referee",
              "referees", "athlete", "athletes", "racing", "race", "races", "cup", "cups", "defender",
              "striker", "fans"),
    "warfare": ("war", "wars", "battle", "battles", "army", "armies", "soldier", "soldiers", "regiment",
                "regiments", "siege", "sieges", "troops", "infantry", "cavalry", "artillery", "general",
                "generals", "fortress", "fortresses", "weapon", "weapons", "rifle", "rifles", "invasion",
                "invasions", "treaty", "treaties", "enemy", "enemies", "defeat", "defeated", "victory",
                "victories", "campaign", "campaigns", "tank", "tanks", "trench", "trenches", "offensive",
                "casualties", "commander", "commanders", "navy", "fleet"),
    "art": ("art", "arts", "painting", "paintings", "painter", "painters", "canvas", "canvases", "portrait",
            "portraits", "sculpture", "sculptures", "sculptor", "gallery", "galleries", "museum", "museums",
            "exhibition", "exhibitions", "brush", "brushes", "fresco", "frescoes", "colour", "colours",
            "renaissance", "baroque", "style", "styles", "drawing", "drawings", "artist", "artists",
            "masterpiece", "masterpieces", "mosaic", "mosaics", "statue", "statues", "pigment", "pigments",
            "landscape", "landscapes", "etching", "etchings", "studio"),
    "space": ("space", "star", "stars", "planet", "planets", "galaxy", "galaxies", "orbit", "orbits",
              "rocket", "rockets", "astronaut", "astronauts", "moon", "moons", "telescope", "telescopes",
              "comet", "comets", "asteroid", "asteroids", "satellite", "satellites", "nebula", "nebulae",
              "cosmic", "gravity", "launch", "launches", "spacecraft", "mission", "missions", "universe",
              "solar", "eclipse", "eclipses", "meteor", "meteors", "supernova", "astronomer", "astronomers",
              "probe", "probes", "lunar", "mars", "jupiter"),
    "food": ("food", "foods", "bread", "breads", "cheese", "cheeses", "fruit", "fruits", "vegetable",
             "vegetables", "recipe", "recipes", "cooking", "cook", "cooks", "kitchen", "kitchens", "meal",
             "meals", "sauce", "sauces", "spice", "spices", "soup", "soups", "rice", "wheat", "flour",
             "baking", "dish", "dishes", "restaurant", "restaurants", "chef", "chefs", "flavour", "flavours",
             "sugar", "butter", "tomato", "tomatoes", "potato", "potatoes", "noodle", "noodles", "dessert",
             "desserts"),
}
SUBJECTS: tuple[str, ...] = tuple(SUBJECT_WORDS)

BACKGROUND_WORDS: tuple[str, ...] = (
    "year", "years", "century", "centuries", "people", "region", "regions", "world", "known", "called",
    "including", "history", "time", "times", "part", "parts", "number", "numbers", "used", "large", "small",
    "early", "late", "modern", "ancient", "major", "several", "first", "second", "new", "old", "great",
    "local", "national", "international", "country", "countries", "area", "areas", "name", "names",
    "common", "important", "example", "examples", "form", "forms", "period", "periods", "group", "groups",
    "development", "system", "systems", "series", "public", "work", "works", "life", "began", "became",
    "described", "according", "although", "however", "since", "during", "between", "million", "thousand",
)

# A hand-written list of English function words (the LDA stage removes its own list).
STOP_WORDS: tuple[str, ...] = (
    "the", "of", "and", "in", "to", "a", "is", "was", "for", "on", "as", "with", "by", "it", "that", "from",
    "at", "this", "which", "be", "are", "were", "an", "its", "their", "has", "had", "also", "or", "but",
    "not", "they", "he", "she", "his", "her", "these", "those", "there", "into", "after", "before", "more",
    "most", "such", "some", "other", "than", "been", "who", "when", "where", "while", "would", "could",
)

HEADINGS = ("History", "Description", "Overview", "Legacy", "Etymology", "Background", "Notes", "See also")
DE_WORDS = ("der", "die", "das", "und", "ist", "ein", "eine", "mit", "Geschichte", "Bild", "Stadt", "Meer")
FR_WORDS = ("le", "la", "les", "et", "est", "un", "une", "avec", "histoire", "image", "ville", "mer")


def zipf_probs(n: int, exponent: float = 0.8) -> np.ndarray:
    """Word frequencies inside one vocabulary: a few frequent words, a long tail (like real text)."""
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return p / p.sum()


class TextMaker:
    """Draws words and builds marked-up articles; every random choice comes from ``rng``."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        # Cumulative tables: drawing by searchsorted is ~20x faster than rng.choice(p=...).
        self._cum = {s: np.cumsum(zipf_probs(len(w))) for s, w in SUBJECT_WORDS.items()}
        self._bg = np.cumsum(zipf_probs(len(BACKGROUND_WORDS), 0.5))

    def _pick(self, cum: np.ndarray) -> int:
        return min(int(np.searchsorted(cum, self.rng.random() * cum[-1], side="right")), len(cum) - 1)

    def word(self, weights: dict[str, float], p_stop: float = 0.35, p_background: float = 0.2) -> tuple[str, bool]:
        """One token and whether it is a content (subject) word."""
        u = self.rng.random()
        if u < p_stop:
            return STOP_WORDS[self.rng.integers(len(STOP_WORDS))], False
        if u < p_stop + p_background:
            return BACKGROUND_WORDS[self._pick(self._bg)], False
        names = list(weights)
        subject = names[self._pick(np.cumsum([weights[n] for n in names]))] if len(names) > 1 else names[0]
        return SUBJECT_WORDS[subject][self._pick(self._cum[subject])], True

    def sentence(self, weights: dict[str, float], markup: bool = True) -> str:
        out = []
        for _ in range(int(self.rng.integers(8, 17))):
            w, content = self.word(weights)
            if markup and content:
                u = self.rng.random()
                if u < 0.08:
                    w = f"[[{w}]]"
                elif u < 0.14:
                    w = f"[[{w.capitalize()}_{self.word(weights)[0]}|{w}]]"
                elif u < 0.18:
                    w = f"'''{w}'''"
                elif u < 0.21:
                    w = f"''{w}''"
            out.append(w)
        text = " ".join(out)
        text = text[0].upper() + text[1:] + "."
        if markup and self.rng.random() < 0.15:
            text += f"<ref>{{{{cite web|url=http://example.org/{self.rng.integers(10**6)}|title=Source}}}}</ref>"
        return text

    def paragraph(self, weights: dict[str, float], markup: bool = True) -> str:
        return " ".join(self.sentence(weights, markup) for _ in range(int(self.rng.integers(3, 7))))

    def title(self, weights: dict[str, float]) -> str:
        main = max(weights, key=weights.get)
        words = SUBJECT_WORDS[main]
        return f"{words[self.rng.integers(len(words))].capitalize()} {words[self.rng.integers(len(words))]}"

    def article(self, weights: dict[str, float], title: str, n_words: int) -> str:
        """A wiki-markup article of roughly ``n_words`` visible words."""
        main, file = max(weights, key=weights.get), title.replace(" ", "_")
        parts = [f"{{{{Infobox {main}\n| name = {title}\n| image = {file}.jpg"
                 f"\n| caption = {self.sentence(weights, markup=False)}\n}}}}"]
        parts.append(f"'''{title}''' " + self.paragraph(weights))
        words = len(parts[-1].split())
        heading = 0
        while words < n_words:
            parts.append(f"== {HEADINGS[heading % len(HEADINGS)]} ==")
            heading += 1
            para = self.paragraph(weights)
            parts.append(para)
            words += len(para.split())
            u = self.rng.random()
            if u < 0.25:
                rows = "\n".join(f"|-\n| {1800 + int(self.rng.integers(200))} || {self.word(weights)[0]} "
                                 f"|| style=\"color:red\" | {self.word(weights)[0]}" for _ in range(3))
                parts.append(f"{{| class=\"wikitable\" border=\"1\"\n|-\n! Year !! Item !! Note\n{rows}\n|}}")
            elif u < 0.45:
                parts.append(f"[[File:{title.replace(' ', '_')}_{heading}.jpg|thumb|right|"
                             f"{self.sentence(weights, markup=False)}]]")
        for s in weights:
            parts.append(f"[[Category:{s.capitalize()}]]")
        return "\n\n".join(parts) + "\n"

    def plain_text(self, weights: dict[str, float], n_words: int) -> str:
        """Section text in the style of the Wikipedia cross-modal dataset (light markup only)."""
        paras, words = [], 0
        while words < n_words:
            para = " ".join(self.sentence(weights, markup=False) for _ in range(int(self.rng.integers(3, 7))))
            paras.append(para)
            words += len(para.split())
        return "\n\n".join(paras)

    def foreign(self, words: tuple[str, ...], n: int = 12) -> str:
        return " ".join(words[self.rng.integers(len(words))] for _ in range(n)).capitalize() + "."


def empty_after_preprocessing() -> str:
    """An article whose every word is markup, a stop word or shorter than 3 letters."""
    return ("{{Infobox stub\n| name = X\n}}\n{{Unreferenced|date=May 2009}}\n"
            "The of and to in a is. It an as by on at.<ref>{{cite book|title=Ibid}}</ref>\n"
            "{| class=\"wikitable\"\n|-\n| a || b\n|}\n[[Category:Stubs]]\n")
