//! An IoU tracker, like jetson-inference's: detections link to the track of the same class
//! they overlap most, so objects keep an id across frames, and brief misses don't flicker.

use super::detection::{iou, Detection};
use crate::settings::typed::Detection as DetectionSettings;

/// The tracking settings of one frame.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Frames a track must be seen before it is reported.
    pub min_frames: u32,
    /// Frames a track may go unseen before it is dropped; until then it is reported as last seen.
    pub drop_frames: u32,
    /// The IoU that links a detection to a track.
    pub overlap: f32,
}

impl Rules {
    pub fn of(settings: &DetectionSettings) -> Rules {
        Rules {
            min_frames: settings.tracking_min_frames,
            drop_frames: settings.tracking_drop_frames,
            overlap: settings.tracking_overlap_threshold,
        }
    }
}

#[derive(Debug, Default)]
pub struct Tracker {
    tracks: Vec<Track>,
    /// The id the next confirmed track gets; ids count reported objects, not candidates.
    next_id: u64,
}

#[derive(Debug)]
struct Track {
    /// Where it was last seen; `track_id` is set once confirmed.
    last: Detection,
    hits: u32,
    misses: u32,
}

impl Tracker {
    /// Takes this frame's detections; returns the confirmed tracks (seen now or lately),
    /// best first, each with its `track_id`.
    pub fn update(&mut self, found: Vec<Detection>, rules: &Rules) -> Vec<Detection> {
        let matches = self.pair(&found, rules.overlap);
        let mut taken = vec![false; found.len()];
        for (track, matched) in self.tracks.iter_mut().zip(&matches) {
            match *matched {
                Some(d) => {
                    taken[d] = true;
                    track.last = Detection {
                        track_id: track.last.track_id,
                        ..found[d].clone()
                    };
                    track.hits += 1;
                    track.misses = 0;
                }
                None => track.misses += 1,
            }
        }
        self.tracks.retain(|t| t.misses <= rules.drop_frames);
        let fresh = found.into_iter().zip(taken).filter(|(_, t)| !t);
        self.tracks.extend(fresh.map(|(last, _)| Track {
            last,
            hits: 1,
            misses: 0,
        }));
        self.report(rules.min_frames)
    }

    /// For each track, the detection it links to: pairs of the same class with IoU of at
    /// least `overlap`, the most overlapping first, each track and detection used once.
    fn pair(&self, found: &[Detection], overlap: f32) -> Vec<Option<usize>> {
        let mut pairs = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            for (d, detection) in found.iter().enumerate() {
                if detection.class_id != track.last.class_id {
                    continue;
                }
                let score = iou(&track.last.rect, &detection.rect);
                if score > 0.0 && score >= overlap {
                    pairs.push((score, t, d));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut matches = vec![None; self.tracks.len()];
        let mut used = vec![false; found.len()];
        for (_, t, d) in pairs {
            if matches[t].is_none() && !used[d] {
                matches[t] = Some(d);
                used[d] = true;
            }
        }
        matches
    }

    /// Confirms the tracks seen `min_frames` times (giving them ids) and lists them.
    fn report(&mut self, min_frames: u32) -> Vec<Detection> {
        let mut reported = Vec::new();
        for track in &mut self.tracks {
            if track.hits < min_frames {
                continue;
            }
            if track.last.track_id.is_none() {
                track.last.track_id = Some(self.next_id);
                self.next_id += 1;
            }
            reported.push(track.last.clone());
        }
        reported.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection(class_id: usize, x: f32) -> Detection {
        Detection {
            class_id,
            confidence: 0.9,
            rect: [x, 10.0, x + 40.0, 50.0],
            track_id: None,
        }
    }

    const RULES: Rules = Rules {
        min_frames: 2,
        drop_frames: 1,
        overlap: 0.5,
    };

    #[test]
    fn tracks_are_confirmed_followed_and_dropped() {
        let mut tracker = Tracker::default();
        // Seen once: not yet reported.
        assert!(tracker.update(vec![detection(1, 0.0)], &RULES).is_empty());
        // Seen twice, moved a little: reported with id 0; another class at the same place
        // starts its own track.
        let seen = tracker.update(vec![detection(1, 4.0), detection(2, 4.0)], &RULES);
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].track_id, seen[0].rect[0]), (Some(0), 4.0));
        // Missed once: still reported where it was last seen.
        let coasting = tracker.update(vec![detection(2, 6.0)], &RULES);
        let ids: Vec<_> = coasting.iter().map(|d| (d.class_id, d.track_id)).collect();
        assert!(
            ids.contains(&(1, Some(0))) && ids.contains(&(2, Some(1))),
            "{ids:?}"
        );
        // Missed twice: dropped; coming back later makes a new object.
        tracker.update(vec![detection(2, 8.0)], &RULES);
        assert!(tracker
            .update(vec![detection(1, 4.0)], &RULES)
            .iter()
            .all(|d| d.class_id == 2));
        let back = tracker.update(vec![detection(1, 4.0)], &RULES);
        assert_eq!(
            back.iter().find(|d| d.class_id == 1).unwrap().track_id,
            Some(2)
        );
    }

    #[test]
    fn each_track_takes_the_detection_it_overlaps_most() {
        let rules = Rules {
            min_frames: 1,
            ..RULES
        };
        let mut tracker = Tracker::default();
        let first = tracker.update(vec![detection(1, 0.0), detection(1, 100.0)], &rules);
        let id_at =
            |found: &[Detection], x: f32| found.iter().find(|d| d.rect[0] == x).unwrap().track_id;
        let (left, right) = (id_at(&first, 0.0), id_at(&first, 100.0));
        assert_ne!(left, right);
        // Both moved right; listed in the other order. Far moves (IoU < 0.5) start new tracks.
        let next = tracker.update(vec![detection(1, 105.0), detection(1, 5.0)], &rules);
        assert_eq!((id_at(&next, 5.0), id_at(&next, 105.0)), (left, right));
        let jump = tracker.update(vec![detection(1, 40.0)], &rules);
        let new = id_at(&jump, 40.0);
        assert!(new.is_some() && new != left && new != right, "{jump:?}");
    }
}
