//! `dimsum qido`: QIDO-RS Search (PS3.18 10.6) from the command line, findscu's way: matching
//! keys with `-k KEY=VALUE`, return keys with `-k KEY` or `--includefield`, and each match
//! printed as a text dump (or all of them as one DICOM JSON array).

use std::io::Write;

use tracing::{error, info};

use dimsum_net::dataset::{dump, json};
use dimsum_web::qido::QidoQuery;
use dimsum_web::resource::Resource;

use crate::dicomweb::{self, WebOptions};
use crate::exit::Code;
use crate::logging::{self, Verbosity};

/// The level searched (PS3.18 10.6.1).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Studies,
    Series,
    Instances,
}

/// Options of `dimsum qido`.
#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub web: WebOptions,
    /// What to search for.
    #[arg(long, value_enum, default_value = "studies")]
    pub level: Level,
    /// Search within this study (series and instances levels; a matching key at the studies
    /// level).
    #[arg(long, value_name = "UID")]
    pub study: Option<String>,
    /// Search within this series (instances level, with --study; a matching key otherwise).
    #[arg(long, value_name = "UID")]
    pub series: Option<String>,
    /// A matching key KEYWORD=VALUE or TAG=VALUE (e.g. PatientName=DOE*, 00080060=CT,
    /// StudyDate=20240101-20241231); a key without a value is a return key (repeatable).
    #[arg(short = 'k', long = "key", value_name = "KEY[=VALUE]")]
    pub keys: Vec<String>,
    /// Attributes to return besides the required ones, or `all` (comma-separated, repeatable).
    #[arg(long = "includefield", value_name = "ATTRIBUTE|all")]
    pub include: Vec<String>,
    /// Return at most N matches.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Skip the first N matches.
    #[arg(long, value_name = "N")]
    pub offset: Option<u32>,
    /// Ask for fuzzy matching of person names (fuzzymatching=true).
    #[arg(long)]
    pub fuzzy: bool,
    /// Print the matches as one DICOM JSON array (PS3.18 F.2) on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

impl Options {
    /// The query the options describe.
    fn query(&self) -> Result<QidoQuery, String> {
        let study = self.study.clone();
        let series = self.series.clone();
        let (resource, study_key, series_key) = match (self.level, study, series) {
            (Level::Studies, study, series) => (Resource::Studies, study, series),
            (Level::Series, Some(study), series) => (Resource::StudySeries(study), None, series),
            (Level::Series, None, series) => (Resource::AllSeries, None, series),
            (Level::Instances, Some(study), Some(series)) => {
                (Resource::SeriesInstances(study, series), None, None)
            }
            (Level::Instances, Some(study), None) => (Resource::StudyInstances(study), None, None),
            (Level::Instances, None, series) => (Resource::AllInstances, None, series),
        };
        let mut query = QidoQuery::new(&resource).map_err(|e| e.to_string())?;
        if let Some(study) = study_key {
            query = query
                .with_key("StudyInstanceUID", &study)
                .map_err(|e| e.to_string())?;
        }
        if let Some(series) = series_key {
            query = query
                .with_key("SeriesInstanceUID", &series)
                .map_err(|e| e.to_string())?;
        }
        for key in &self.keys {
            query = match key.split_once('=') {
                Some((attribute, value)) => query.with_key(attribute.trim(), value),
                None => query.with_include(key.trim()),
            }
            .map_err(|e| format!("-k {key}: {e}"))?;
        }
        for field in self.include.iter().flat_map(|list| list.split(',')) {
            let field = field.trim();
            if field.is_empty() {
                continue;
            }
            if field == "all" {
                query.include_all = true;
            } else {
                query = query
                    .with_include(field)
                    .map_err(|e| format!("--includefield {field}: {e}"))?;
            }
        }
        query.limit = self.limit;
        query.offset = self.offset;
        if self.fuzzy {
            query.fuzzy_matching = Some(true);
        }
        Ok(query)
    }
}

pub async fn run(options: Options) -> Code {
    logging::init(options.verbosity);
    let query = match options.query() {
        Ok(query) => query,
        Err(message) => {
            error!("{message}");
            return Code::Usage;
        }
    };
    let client = match options.web.client() {
        Ok(client) => client,
        Err(code) => return code,
    };
    info!(
        "Searching {}?{}",
        client.url_of(&query.resource()),
        query.to_query_string()
    );
    let matches = match client.search(&query).await {
        Ok(matches) => matches,
        Err(error) => return dicomweb::report(&error),
    };
    info!("{} matches", matches.len());
    let mut out = std::io::stdout().lock();
    let written = if options.json {
        write_json(&mut out, &matches)
    } else {
        matches.iter().enumerate().try_for_each(|(index, found)| {
            writeln!(out, "# Match {}\n{}", index + 1, dump::dump(found))
        })
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Code::Success,
        Err(e) => {
            error!("cannot write the matches: {e}");
            Code::Internal
        }
    }
}

/// The matches as one JSON array, one data set per line.
fn write_json(
    out: &mut impl Write,
    matches: &[dimsum_net::dataset::dicom_object::InMemDicomObject],
) -> std::io::Result<()> {
    write!(out, "[")?;
    for (index, found) in matches.iter().enumerate() {
        let separator = if index == 0 { "" } else { "," };
        write!(out, "{separator}\n{}", json::to_json(found))?;
    }
    writeln!(out, "\n]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    fn query(args: &[&str]) -> Result<QidoQuery, String> {
        let mut all = vec!["qido", "http://localhost:8042/dicom-web"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .map_err(|e| e.to_string())?
            .options
            .query()
    }

    #[test]
    fn the_level_and_uids_choose_the_resource() {
        let study = "1.2.3";
        let series = "1.2.3.4";
        let cases: [(&[&str], &str); 6] = [
            (&[], "studies"),
            (&["--level", "series"], "series"),
            (
                &["--level", "series", "--study", study],
                "studies/1.2.3/series",
            ),
            (&["--level", "instances"], "instances"),
            (
                &["--level", "instances", "--study", study],
                "studies/1.2.3/instances",
            ),
            (
                &["--level", "instances", "--study", study, "--series", series],
                "studies/1.2.3/series/1.2.3.4/instances",
            ),
        ];
        for (args, path) in cases {
            assert_eq!(query(args).unwrap().resource().to_path(), path, "{args:?}");
        }
        // A UID the path cannot hold becomes a matching key.
        let q = query(&["--study", study]).unwrap();
        assert_eq!(q.to_query_string(), "StudyInstanceUID=1.2.3");
        let q = query(&["--level", "series", "--series", series]).unwrap();
        assert_eq!(q.to_query_string(), "SeriesInstanceUID=1.2.3.4");
    }

    #[test]
    fn keys_include_fields_and_paging_make_the_query_string() {
        let q = query(&[
            "-k",
            "PatientName=DOE*",
            "-k",
            "00080060=CT",
            "-k",
            "StudyDescription",
            "--includefield",
            "00081030,all",
            "--limit",
            "10",
            "--offset",
            "20",
            "--fuzzy",
        ])
        .unwrap();
        assert_eq!(
            q.to_query_string(),
            "PatientName=DOE*&00080060=CT&includefield=StudyDescription%2C00081030%2Call\
             &fuzzymatching=true&limit=10&offset=20"
        );
        assert!(
            query(&["-k", "NotAKeyword=1"])
                .unwrap_err()
                .contains("NotAKeyword")
        );
        assert!(query(&["--limit", "0"]).is_err());
    }
}
