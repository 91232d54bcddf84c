//! Geofencing and data residency.
//!
//! Two separate questions are answered here. The geofence asks whether a
//! client country may use the router at all (451 if not). Residency asks which
//! nodes may see a request's data: a request from a country in a jurisdiction
//! may only reach nodes of that jurisdiction or nodes marked `global`, on every
//! attempt including fallbacks.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::config::UnknownCountry;

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    /// Parses two ASCII letters, in any case. `XX`, the code CDNs send when
    /// they do not know the country, is unknown, not a country.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().as_bytes() {
            [a, b] if a.eq_ignore_ascii_case(&b'X') && b.eq_ignore_ascii_case(&b'X') => None,
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XX")
    }
}

/// A client country for the `x-edge-country` header: its code, or `XX` when unknown.
pub fn country_label(country: Option<Country>) -> String {
    match &country {
        Some(c) => c.as_str().to_string(),
        None => "XX".to_string(),
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The 27 EU member states, which `EU` and `@EU` stand for in country lists.
pub const EU_MEMBERS: [&str; 27] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT",
    "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];

/// The EEA's members beyond the EU: `EEA` is the EU and these.
const EEA_ALSO: [&str; 3] = ["IS", "LI", "NO"];

/// The region names country lists accept, with or without `@`, and what each stands for.
pub const REGIONS: [(&str, &str); 2] =
    [("EU", "the 27 EU member states"), ("EEA", "the EU member states, Iceland, Liechtenstein and Norway")];

/// The ISO 3166-1 alpha-2 codes assigned to countries and territories, sorted.
const ISO_3166_1: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD",
    "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA",
    "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE",
    "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA",
    "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK",
    "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT",
    "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS",
    "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS",
    "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST",
    "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW",
    "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA",
    "ZM", "ZW",
];

/// A code outside ISO 3166-1 that CDNs and IP databases use for real
/// clients: `XK`, Kosovo (user-assigned).
const ALSO_USED: [&str; 1] = ["XK"];

/// Expands a country list entry: an ISO 3166-1 alpha-2 code (or `XK`),
/// or a region name, `EU` or `EEA`, with or without `@`.
pub fn expand_country(entry: &str) -> Result<Vec<Country>, String> {
    let name = entry.trim();
    let region = name.strip_prefix('@').unwrap_or(name);
    let members: Option<Vec<&str>> = if region.eq_ignore_ascii_case("EU") {
        Some(EU_MEMBERS.to_vec())
    } else if region.eq_ignore_ascii_case("EEA") {
        Some(EU_MEMBERS.iter().chain(&EEA_ALSO).copied().collect())
    } else {
        None
    };
    if let Some(members) = members {
        return Ok(members.into_iter().filter_map(Country::parse).collect());
    }
    let regions = REGIONS.iter().map(|(r, _)| format!("`{r}`")).collect::<Vec<_>>().join(", ");
    match Country::parse(name) {
        Some(c) if ISO_3166_1.binary_search(&c.as_str()).is_ok() || ALSO_USED.contains(&c.as_str()) => Ok(vec![c]),
        Some(c) => {
            Err(format!("`{entry}` is not a country: {c} is not an ISO 3166-1 alpha-2 code (regions: {regions})"))
        }
        None => Err(format!(
            "`{entry}` is not a country: use a two-letter ISO 3166-1 code such as `DE`, or a region: {regions}"
        )),
    }
}

/// Why the geofence refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoRefusal {
    /// The country is on the deny list.
    Denied(Country),
    /// An allow list exists and the country is not on it.
    NotAllowed(Country),
    /// The country is unknown and the config refuses unknown countries.
    Unknown,
}

impl fmt::Display for GeoRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied(c) => write!(f, "requests from {c} are not served by this endpoint"),
            Self::NotAllowed(c) => write!(f, "requests from {c} are not in this endpoint's service area"),
            Self::Unknown => f.write_str("the client's country could not be determined and this endpoint requires it"),
        }
    }
}

/// Compiled allow and deny lists.
#[derive(Debug, Clone, Default)]
pub struct Geofence {
    /// Empty means every country not denied.
    pub allow: BTreeSet<Country>,
    /// Always refused.
    pub deny: BTreeSet<Country>,
    /// What an unknown country gets.
    pub unknown: UnknownCountry,
}

impl Geofence {
    /// Whether a client from `country` may be served.
    pub fn check(&self, country: Option<Country>) -> Result<(), GeoRefusal> {
        match country {
            None if self.unknown == UnknownCountry::Deny => Err(GeoRefusal::Unknown),
            None => Ok(()),
            Some(c) if self.deny.contains(&c) => Err(GeoRefusal::Denied(c)),
            Some(c) if !self.allow.is_empty() && !self.allow.contains(&c) => Err(GeoRefusal::NotAllowed(c)),
            Some(_) => Ok(()),
        }
    }
}

/// Index of a jurisdiction in `Residency::names`.
pub type JurisdictionId = usize;

/// Where a node may process data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeResidency {
    /// Any jurisdiction's requests.
    Global,
    /// Only this jurisdiction's requests, and requests bound to none.
    In(JurisdictionId),
    /// Not declared: only requests bound to no jurisdiction.
    Unspecified,
}

/// Countries grouped into jurisdictions.
#[derive(Debug, Clone, Default)]
pub struct Residency {
    /// Jurisdiction names, indexed by `JurisdictionId`.
    pub names: Vec<String>,
    /// The jurisdiction of each listed country.
    pub by_country: HashMap<Country, JurisdictionId>,
    /// Jurisdiction of requests whose country is unknown.
    pub unknown: Option<JurisdictionId>,
}

impl Residency {
    /// The jurisdiction a request from `country` is bound to, if any.
    pub fn jurisdiction_of(&self, country: Option<Country>) -> Option<JurisdictionId> {
        match country {
            Some(c) => self.by_country.get(&c).copied(),
            None => self.unknown,
        }
    }

    /// The name of a jurisdiction.
    pub fn name(&self, id: JurisdictionId) -> &str {
        self.names.get(id).map_or("?", String::as_str)
    }
}

/// Whether a node with `node` residency may receive a request bound to `request`.
pub fn permits(request: Option<JurisdictionId>, node: NodeResidency) -> bool {
    match (request, node) {
        (None, _) | (_, NodeResidency::Global) => true,
        (Some(j), NodeResidency::In(n)) => j == n,
        (Some(_), NodeResidency::Unspecified) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Country {
        Country::parse(s).unwrap()
    }

    #[test]
    fn country_codes_are_two_letters_in_any_case() {
        assert_eq!(c("de"), c("DE"));
        assert_eq!(Country::parse("DEU"), None);
        assert_eq!(Country::parse("1A"), None);
        assert_eq!(Country::parse(""), None);
        assert_eq!(Country::parse("xx"), None, "XX means unknown");
    }

    #[test]
    fn regions_expand_to_their_members_with_or_without_at() {
        let eu = expand_country("@EU").unwrap();
        assert_eq!(eu.len(), 27);
        assert!(eu.contains(&c("GR")) && !eu.contains(&c("GB")));
        assert_eq!(expand_country("EU").unwrap(), eu);
        assert_eq!(expand_country("eu").unwrap(), eu);
        let eea = expand_country("EEA").unwrap();
        assert_eq!(eea.len(), 30);
        assert!(eea.contains(&c("NO")) && !eea.contains(&c("CH")));
        assert!(expand_country("Germany").unwrap_err().contains("two-letter"));
    }

    #[test]
    fn only_assigned_codes_are_countries() {
        assert!(ISO_3166_1.windows(2).all(|w| w[0] < w[1]), "the table must stay sorted");
        assert_eq!(expand_country("de").unwrap(), vec![c("DE")]);
        assert_eq!(expand_country("XK").unwrap(), vec![c("XK")]);
        for unassigned in ["ZZ", "UK", "AA", "QQ"] {
            let err = expand_country(unassigned).unwrap_err();
            assert!(err.contains("not an ISO 3166-1 alpha-2 code"), "{err}");
        }
        assert!(expand_country("XX").unwrap_err().contains("two-letter"), "XX means unknown");
    }

    #[test]
    fn deny_wins_over_allow_and_unknown_follows_the_config() {
        let fence =
            Geofence { allow: [c("DE"), c("FR")].into(), deny: [c("FR")].into(), unknown: UnknownCountry::Deny };
        assert_eq!(fence.check(Some(c("DE"))), Ok(()));
        assert_eq!(fence.check(Some(c("FR"))), Err(GeoRefusal::Denied(c("FR"))));
        assert_eq!(fence.check(Some(c("US"))), Err(GeoRefusal::NotAllowed(c("US"))));
        assert_eq!(fence.check(None), Err(GeoRefusal::Unknown));
        assert_eq!(Geofence::default().check(None), Ok(()));
    }

    #[test]
    fn bound_requests_only_reach_their_jurisdiction_or_global() {
        assert!(permits(Some(0), NodeResidency::In(0)));
        assert!(permits(Some(0), NodeResidency::Global));
        assert!(!permits(Some(0), NodeResidency::In(1)));
        assert!(!permits(Some(0), NodeResidency::Unspecified));
        assert!(permits(None, NodeResidency::Unspecified));
        assert!(permits(None, NodeResidency::In(1)));
    }
}
