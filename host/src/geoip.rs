//! The IP database (`server.geoip_database`): a MaxMind-format `.mmdb` file
//! read into memory, which gives a client address's country. Both record
//! shapes in use are read: MaxMind's GeoIP2/GeoLite2 (`country.iso_code`,
//! else `registered_country.iso_code`) and ip-location-db's (`country_code`).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use edge_router::geo::Country;
use serde::Deserialize;

/// A database older than this is warned about: MaxMind publishes new ones
/// twice a week, and its licence asks for updates within 30 days.
const STALE_AFTER: Duration = Duration::from_secs(45 * 24 * 3600);

/// A loaded IP database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
    /// The file it was read from, as configured.
    pub path: String,
}

/// The fields of a record the country is read from.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<Named<'a>>,
    #[serde(borrow)]
    registered_country: Option<Named<'a>>,
    country_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Named<'a> {
    iso_code: Option<&'a str>,
}

impl GeoIp {
    /// Reads and checks the database at `path`.
    pub fn load(path: &str) -> anyhow::Result<Self> {
        let bytes = std::fs::read(Path::new(path)).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?;
        let reader = maxminddb::Reader::from_source(bytes)
            .map_err(|e| anyhow::anyhow!("{path} is not a MaxMind DB (.mmdb) file: {e}"))?;
        Ok(Self { reader, path: path.to_string() })
    }

    /// The country of `addr`, if the database knows it.
    pub fn country(&self, addr: IpAddr) -> Option<Country> {
        // An IPv6 address in an IPv4-only database, or a damaged record,
        // is an address of unknown country, never an error of the request.
        let found = self.reader.lookup(addr).ok()?;
        let record: Record = found.decode().ok()??;
        let code = record
            .country
            .and_then(|c| c.iso_code)
            .or(record.country_code)
            .or_else(|| record.registered_country.and_then(|c| c.iso_code))?;
        Country::parse(code)
    }

    /// What it is, for `check` and the log: type, build date, IP version.
    pub fn describe(&self) -> String {
        let m = self.reader.metadata();
        let built = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(m.build_epoch));
        format!("{}: {}, built {built}, IPv{}", self.path, m.database_type, m.ip_version)
    }

    /// Warns in the log when the database is old enough to misplace clients.
    pub fn warn_if_stale(&self) {
        let built = SystemTime::UNIX_EPOCH + Duration::from_secs(self.reader.metadata().build_epoch);
        if SystemTime::now().duration_since(built).is_ok_and(|age| age > STALE_AFTER) {
            tracing::warn!(
                "the IP database {} was built over 45 days ago: addresses move between countries, so update it",
                self.describe()
            );
        }
    }
}
