//! DICOMweb resource paths (PS3.18 §10): parsed, written back, and hostile paths refused.

use dimsum_web::resource::{Entity, Resource, ResourceError, ResourceLimits};

/// Whether an error is the one a case expects.
type Check = fn(&ResourceError) -> bool;

const ST: &str = "1.2.840.113619.2.1";
const SE: &str = "1.2.840.113619.2.1.2";
const IN: &str = "1.2.840.113619.2.1.2.3";

fn instance() -> Entity {
    Entity::Instance {
        study: ST.into(),
        series: SE.into(),
        instance: IN.into(),
    }
}

#[test]
fn every_resource_parses_and_writes_back_to_the_same_path() {
    let series = Entity::Series {
        study: ST.into(),
        series: SE.into(),
    };
    let cases = [
        ("studies".to_owned(), Resource::Studies),
        ("series".to_owned(), Resource::AllSeries),
        ("instances".to_owned(), Resource::AllInstances),
        (format!("studies/{ST}"), Resource::Study(ST.into())),
        (
            format!("studies/{ST}/series"),
            Resource::StudySeries(ST.into()),
        ),
        (
            format!("studies/{ST}/instances"),
            Resource::StudyInstances(ST.into()),
        ),
        (
            format!("studies/{ST}/series/{SE}"),
            Resource::Series(ST.into(), SE.into()),
        ),
        (
            format!("studies/{ST}/series/{SE}/instances"),
            Resource::SeriesInstances(ST.into(), SE.into()),
        ),
        (
            format!("studies/{ST}/series/{SE}/instances/{IN}"),
            Resource::Instance(ST.into(), SE.into(), IN.into()),
        ),
        (
            format!("studies/{ST}/series/{SE}/instances/{IN}/frames/1,3,5"),
            Resource::Frames(instance(), vec![1, 3, 5]),
        ),
        (
            format!("studies/{ST}/metadata"),
            Resource::Metadata(Entity::Study { study: ST.into() }),
        ),
        (
            format!("studies/{ST}/series/{SE}/metadata"),
            Resource::Metadata(series.clone()),
        ),
        (
            format!("studies/{ST}/series/{SE}/instances/{IN}/metadata"),
            Resource::Metadata(instance()),
        ),
        (
            format!("studies/{ST}/rendered"),
            Resource::Rendered(Entity::Study { study: ST.into() }, None),
        ),
        (
            format!("studies/{ST}/series/{SE}/thumbnail"),
            Resource::Thumbnail(series, None),
        ),
        (
            format!("studies/{ST}/series/{SE}/instances/{IN}/frames/2/rendered"),
            Resource::Rendered(instance(), Some(vec![2])),
        ),
        (
            format!("studies/{ST}/series/{SE}/instances/{IN}/frames/7,8/thumbnail"),
            Resource::Thumbnail(instance(), Some(vec![7, 8])),
        ),
        (
            format!("studies/{ST}/series/{SE}/instances/{IN}/bulkdata/7FE00010"),
            Resource::Bulkdata(instance(), vec!["7FE00010".into()]),
        ),
        (
            format!("studies/{ST}/series/{SE}/instances/{IN}/bulkdata/00540016/0/00181072"),
            Resource::Bulkdata(
                instance(),
                vec!["00540016".into(), "0".into(), "00181072".into()],
            ),
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(Resource::parse(&path), Ok(expected.clone()), "{path}");
        assert_eq!(
            Resource::parse(&format!("/{path}")),
            Ok(expected.clone()),
            "/{path}"
        );
        assert_eq!(expected.to_path(), path);
    }
}

#[test]
fn the_entity_of_a_retrieval_resource() {
    let frames = Resource::parse(&format!("studies/{ST}/series/{SE}/instances/{IN}/frames/1"))
        .expect("frames");
    let entity = frames.entity().expect("an entity");
    assert_eq!(entity, instance());
    assert_eq!(
        (entity.study(), entity.series(), entity.instance()),
        (ST, Some(SE), Some(IN))
    );
    assert_eq!(Resource::Studies.entity(), None);
    assert_eq!(Resource::StudySeries(ST.into()).entity(), None);
}

#[test]
fn invalid_uids_are_refused_with_which_uid() {
    for (path, what) in [
        ("studies/1.02.3".to_owned(), "Study Instance UID"),
        ("studies/abc".to_owned(), "Study Instance UID"),
        (format!("studies/{ST}/series/1..2"), "Series Instance UID"),
        (
            format!("studies/{ST}/series/{SE}/instances/{}", "1".repeat(65)),
            "SOP Instance UID",
        ),
    ] {
        match Resource::parse(&path) {
            Err(error @ ResourceError::InvalidUid { what: found, .. }) => {
                assert_eq!(found, what, "{path}");
                assert_eq!(error.status(), 400);
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn path_traversal_and_encoded_separators_are_refused() {
    let cases: [(&str, Check); 9] = [
        ("studies/..", |e| {
            matches!(e, ResourceError::DotSegment { .. })
        }),
        ("studies/%2e%2e", |e| {
            matches!(e, ResourceError::DotSegment { .. })
        }),
        ("studies/.", |e| {
            matches!(e, ResourceError::DotSegment { .. })
        }),
        ("studies/1.2%2F..%2F..%2Fetc", |e| {
            matches!(e, ResourceError::EncodedSeparator { index: 1 })
        }),
        ("studies/1.2%5c..", |e| {
            matches!(e, ResourceError::EncodedSeparator { .. })
        }),
        ("studies//series", |e| {
            matches!(e, ResourceError::EmptySegment { index: 1 })
        }),
        ("studies/", |e| {
            matches!(e, ResourceError::EmptySegment { index: 1 })
        }),
        ("studies/1.2%00", |e| {
            matches!(e, ResourceError::InvalidCharacter { .. })
        }),
        ("studies/1.2?x=1", |e| {
            matches!(e, ResourceError::InvalidCharacter { found: '?' })
        }),
    ];
    for (path, check) in cases {
        let error = Resource::parse(path).expect_err(path);
        assert!(check(&error), "{path}: {error:?}");
        assert_eq!(error.status(), 400, "{path}");
    }
}

#[test]
fn non_utf8_percent_escapes_are_refused() {
    let error = Resource::parse("studies/%ff%fe").expect_err("not UTF-8");
    assert_eq!(error, ResourceError::NotUtf8 { index: 1 });
    // A percent sign that is not an escape decodes to itself and then fails as a UID.
    assert!(matches!(
        Resource::parse("studies/1.2%zz"),
        Err(ResourceError::InvalidUid { .. })
    ));
}

#[test]
fn paths_that_name_no_resource_are_404() {
    for path in [
        "".to_owned(),
        "patients".to_owned(),
        format!("studies/{ST}/unknown"),
        format!("studies/{ST}/series/{SE}/instances/{IN}/frames"),
        format!("studies/{ST}/series/{SE}/instances/{IN}/bulkdata"),
        format!("studies/{ST}/series/{SE}/instances/{IN}/metadata/extra"),
    ] {
        let error = Resource::parse(&path).expect_err(&path);
        assert!(
            matches!(error, ResourceError::Unknown { .. }),
            "{path}: {error:?}"
        );
        assert_eq!(error.status(), 404);
    }
}

#[test]
fn frame_lists_are_one_based_and_bounded() {
    let base = format!("studies/{ST}/series/{SE}/instances/{IN}/frames");
    for bad in ["0", "1,0", "-1", "1,,2", "a", "1,", "4294967296", "+1"] {
        let error = Resource::parse(&format!("{base}/{bad}")).expect_err(bad);
        assert!(
            matches!(error, ResourceError::InvalidFrame { .. }),
            "{bad}: {error:?}"
        );
        assert_eq!(error.status(), 400);
    }
    let limits = ResourceLimits {
        max_frames: 3,
        ..ResourceLimits::default()
    };
    assert_eq!(
        Resource::parse_with(&format!("{base}/1,2,3"), &limits),
        Ok(Resource::Frames(instance(), vec![1, 2, 3]))
    );
    assert_eq!(
        Resource::parse_with(&format!("{base}/1,2,3,4"), &limits),
        Err(ResourceError::TooManyFrames { limit: 3 })
    );
    // 100,000 frame numbers stop at the default limit, without parsing the rest.
    let many = vec!["1"; 100_000].join(",");
    let limits = ResourceLimits {
        max_path_length: 1 << 20,
        ..ResourceLimits::default()
    };
    assert_eq!(
        Resource::parse_with(&format!("{base}/{many}"), &limits),
        Err(ResourceError::TooManyFrames {
            limit: ResourceLimits::default().max_frames
        })
    );
}

#[test]
fn long_paths_and_many_segments_are_refused() {
    let long = format!("studies/{}", "1".repeat(10_000));
    assert!(matches!(
        Resource::parse(&long),
        Err(ResourceError::PathTooLong { limit: 8192, .. })
    ));
    let deep = vec!["a"; 1000].join("/");
    assert_eq!(
        Resource::parse(&deep),
        Err(ResourceError::TooManySegments { limit: 64 })
    );
}

#[test]
fn bulkdata_segments_are_restricted() {
    let base = format!("studies/{ST}/series/{SE}/instances/{IN}/bulkdata");
    assert!(matches!(
        Resource::parse(&format!("{base}/a%20b")),
        Err(ResourceError::InvalidBulkdataSegment { .. })
    ));
    let many = vec!["0"; 40].join("/");
    assert_eq!(
        Resource::parse(&format!("{base}/{many}")),
        Err(ResourceError::TooManyBulkdataSegments { limit: 32 })
    );
}

#[test]
fn written_paths_percent_encode_what_could_change_their_meaning() {
    // A resource built by hand with a value no parser would accept still writes one segment.
    let resource = Resource::Study("a/../b?c".into());
    assert_eq!(resource.to_path(), "studies/a%2F..%2Fb%3Fc");
    assert!(Resource::parse(&resource.to_path()).is_err());
}
