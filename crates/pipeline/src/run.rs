//! [`Pipeline`]: every stage into one run directory, skipping what is unchanged, resuming
//! what was interrupted, redoing what changed and everything after it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use docraft_core::{CancelToken, Progress};
use serde::Serialize;

use crate::error::{PipelineError, Result};
use crate::event::{Event, SkipReason, Stage, StartMode};
use crate::manifest::{Manifest, StageRecord, StageStatus, hash_path, hash_str, now};
use crate::settings::Settings;
use crate::stage::{self, Ctx};

/// The files of a run directory. Every name comes from here (and the stage crates), so a
/// caller (the CLI, a server) finds the outputs without knowing the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLayout {
    dir: PathBuf,
}

impl RunLayout {
    /// The layout of `dir`.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The run directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `manifest.json`.
    #[must_use]
    pub fn manifest(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }

    /// `config.toml`: the settings of the last run, every key written out.
    #[must_use]
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// `chunks.jsonl`.
    #[must_use]
    pub fn chunks(&self) -> PathBuf {
        self.dir.join("chunks.jsonl")
    }

    /// `ingest-report.json`.
    #[must_use]
    pub fn ingest_report(&self) -> PathBuf {
        self.dir.join("ingest-report.json")
    }

    /// `index/`.
    #[must_use]
    pub fn index(&self) -> PathBuf {
        self.dir.join("index")
    }

    /// `qa.jsonl` (its side files beside it).
    #[must_use]
    pub fn qa(&self) -> PathBuf {
        self.dir.join("qa.jsonl")
    }

    /// `qa.train.jsonl`, the exported pairs (its validation file beside it).
    #[must_use]
    pub fn qa_train(&self) -> PathBuf {
        self.dir.join("qa.train.jsonl")
    }

    /// The validation file of the exported pairs.
    #[must_use]
    pub fn qa_valid(&self) -> PathBuf {
        docraft_qa_gen::export::valid_path_for(&self.qa_train())
    }

    /// `raft.jsonl` (its side files and exports beside it).
    #[must_use]
    pub fn raft(&self) -> PathBuf {
        self.dir.join("raft.jsonl")
    }

    /// `train/`, the training run directory.
    #[must_use]
    pub fn train(&self) -> PathBuf {
        self.dir.join("train")
    }

    /// `train/adapter/`.
    #[must_use]
    pub fn adapter(&self) -> PathBuf {
        docraft_train::RunFiles::new(&self.train()).adapter()
    }

    /// `report/`.
    #[must_use]
    pub fn report(&self) -> PathBuf {
        self.dir.join("report")
    }
}

/// What a finished (or stopped) run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunSummary {
    /// The manifest.
    pub manifest: PathBuf,
    /// The stages that ran.
    pub ran: Vec<Stage>,
    /// The stages skipped as unchanged.
    pub unchanged: Vec<Stage>,
    /// The report, when eval ran or was up to date.
    pub report: Option<PathBuf>,
}

/// The whole pipeline over some documents into one run directory.
///
/// ```no_run
/// use docraft_core::CancelToken;
/// use docraft_pipeline::{Pipeline, Settings, stage::ignore_events};
///
/// # fn main() -> Result<(), docraft_pipeline::PipelineError> {
/// let settings = Settings::from_file("docraft.toml".as_ref())?;
/// let summary = Pipeline::new(settings, vec!["fixtures/docs".into()], "out/run")
///     .run(&ignore_events, &CancelToken::new())?;
/// println!("manifest: {}", summary.manifest.display());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Pipeline {
    settings: Settings,
    documents: Vec<PathBuf>,
    layout: RunLayout,
    force: bool,
    until: Stage,
    config_origin: String,
}

struct Plan {
    stage: Stage,
    settings: serde_json::Value,
    inputs: Vec<PathBuf>,
    models: Vec<PathBuf>,
    prompts: bool,
    outputs: Vec<PathBuf>,
    /// Removed before a fresh (not resumed) run.
    clean: Vec<PathBuf>,
}

struct Runner<'a> {
    layout: &'a RunLayout,
    manifest: Manifest,
    force: bool,
    prompts: BTreeMap<String, String>,
    /// Model files are read-only inputs shared by several stages: hashed once per run.
    model_hashes: BTreeMap<PathBuf, String>,
    events: &'a dyn Progress<Event>,
    cancel: &'a CancelToken,
    summary: RunSummary,
}

impl Pipeline {
    /// A pipeline over `documents` (files and folders) into `run_dir`.
    #[must_use]
    pub fn new(settings: Settings, documents: Vec<PathBuf>, run_dir: impl Into<PathBuf>) -> Self {
        Self {
            settings,
            documents,
            layout: RunLayout::new(run_dir),
            force: false,
            until: Stage::Eval,
            config_origin: "(settings)".into(),
        }
    }

    /// Redo every stage, even unchanged ones.
    #[must_use]
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Stop after `stage`.
    #[must_use]
    pub fn with_until(mut self, stage: Stage) -> Self {
        self.until = stage;
        self
    }

    /// Where the settings came from (a config file's path), for the manifest.
    #[must_use]
    pub fn with_config_origin(mut self, origin: impl Into<String>) -> Self {
        self.config_origin = origin.into();
        self
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The run directory's layout.
    #[must_use]
    pub fn layout(&self) -> &RunLayout {
        &self.layout
    }

    /// Runs every enabled stage up to `until`. Events go to `events`; `cancel` stops the run
    /// between units of work (the stage is then recorded as `cancelled` and the same run
    /// resumes it).
    ///
    /// # Errors
    /// The first stage that fails (recorded in the manifest with its error), or
    /// [`PipelineError::Cancelled`].
    pub fn run(&self, events: &dyn Progress<Event>, cancel: &CancelToken) -> Result<RunSummary> {
        self.settings.validate()?;
        let layout = &self.layout;
        std::fs::create_dir_all(layout.dir()).map_err(|e| PipelineError::io(layout.dir(), e))?;
        let config_text = self.settings.to_toml()?;
        let kept = layout.config();
        if std::fs::read_to_string(&kept).ok().as_deref() != Some(config_text.as_str()) {
            std::fs::write(&kept, &config_text).map_err(|e| PipelineError::io(&kept, e))?;
        }
        let mut manifest = Manifest::load(&layout.manifest())?;
        manifest.docraft_version = env!("CARGO_PKG_VERSION").into();
        manifest.note = "Per stage: the fingerprint hashes its settings, inputs, models and prompts; every dataset \
                         record names its document (doc_id, source), pages and byte span."
            .into();
        manifest.config = BTreeMap::from([
            ("path".to_string(), self.config_origin.clone()),
            ("sha256".to_string(), hash_str(&config_text)),
        ]);
        let found = stage::ingest::documents(&self.settings.ingest, &self.documents)?;
        let docs = found.files;
        manifest.documents =
            docs.iter().map(|p| Ok((p.display().to_string(), hash_path(p)?))).collect::<Result<_>>()?;
        manifest.skipped_documents =
            found.skipped.iter().map(|s| (s.path.display().to_string(), s.reason.to_string())).collect();
        let mut prompts = BTreeMap::new();
        for (name, text) in docraft_qa_gen::prompt::PROMPTS.iter().chain(docraft_raft::PROMPTS) {
            prompts.insert((*name).to_string(), hash_str(text));
        }
        let mut r = Runner {
            layout,
            manifest,
            force: self.force,
            prompts,
            model_hashes: BTreeMap::new(),
            events,
            cancel,
            summary: RunSummary { manifest: layout.manifest(), ..RunSummary::default() },
        };
        r.save()?;
        self.stages(&mut r, &docs)?;
        Ok(r.summary)
    }

    fn stages(&self, r: &mut Runner<'_>, docs: &[PathBuf]) -> Result<()> {
        let s = &self.settings;
        let l = &self.layout;
        let generator = s.models.generator_path();
        let base = s.models.base_path();
        let embedder = s.index.model.clone().unwrap_or_else(|| s.models.embedder_path_for(s.index.backend));
        let stop = |stage: Stage| stage >= self.until;

        // 1. ingest
        let plan = Plan {
            stage: Stage::Ingest,
            settings: to_json(&s.ingest),
            inputs: docs.to_vec(),
            models: vec![],
            prompts: false,
            outputs: vec![l.chunks(), l.ingest_report()],
            clean: vec![l.chunks(), torn(&l.chunks()), l.ingest_report()],
        };
        r.stage(plan, |ctx, _| {
            let o = stage::ingest::run(&s.ingest, &self.documents, &l.chunks(), Some(&l.ingest_report()), ctx)?;
            if o.report.totals.ok == 0 && o.report.totals.skipped == 0 {
                return Err(PipelineError::Needs { stage: Stage::Ingest, reason: "no document could be read".into() });
            }
            if s.ingest.strict && o.report.totals.failed > 0 {
                return Err(PipelineError::Needs {
                    stage: Stage::Ingest,
                    reason: format!("{} files failed and strict is set", o.report.totals.failed),
                });
            }
            Ok(stage::ingest::summary(&o, &l.chunks()))
        })?;
        if stop(Stage::Ingest) {
            return Ok(());
        }

        // 2. index
        let plan = Plan {
            stage: Stage::Index,
            settings: without_search(to_json(&s.index)),
            inputs: vec![l.chunks()],
            models: vec![embedder.clone()],
            prompts: false,
            outputs: vec![l.index()],
            clean: vec![],
        };
        r.stage(plan, |ctx, _| {
            let o = stage::index::build(&s.index, &embedder, &l.chunks(), &l.index(), ctx)?;
            Ok(stage::index::summary(&o, &l.index()))
        })?;
        if stop(Stage::Index) {
            return Ok(());
        }

        // 3. qa + export, optional
        if s.qa.enabled {
            let local = local_models(&s.qa.generator, &generator);
            let qa_files = docraft_qa_gen::RunFiles::new(&l.qa());
            let plan = Plan {
                stage: Stage::Qa,
                settings: to_json(&s.qa),
                inputs: vec![l.chunks()],
                models: local,
                prompts: true,
                outputs: vec![qa_files.accepted.clone(), qa_files.rejected.clone()],
                clean: vec![
                    qa_files.accepted.clone(),
                    qa_files.rejected.clone(),
                    qa_files.progress.clone(),
                    qa_files.requests.clone(),
                ],
            };
            let paths = stage::qa::QaPaths {
                chunks: l.chunks(),
                output: l.qa(),
                local_model: Some(generator.clone()),
                embedder: Some(embedder.clone()),
            };
            r.stage(plan, |ctx, _| {
                let o = stage::qa::generate(&s.qa, &paths, false, ctx)?;
                Ok(stage::qa::summary(&o, &l.qa()))
            })?;
            let plan = Plan {
                stage: Stage::Export,
                settings: to_json(&s.export),
                inputs: vec![l.qa()],
                models: vec![],
                prompts: false,
                outputs: vec![l.qa_train(), l.qa_valid()],
                clean: vec![l.qa_train(), l.qa_valid()],
            };
            r.stage(plan, |_, _| {
                let o = stage::qa::export_pairs(&s.export, &l.qa(), &l.qa_train())?;
                Ok(stage::qa::export_summary(&o))
            })?;
        } else {
            r.skip(Stage::Qa, SkipReason::Disabled);
            r.skip(Stage::Export, SkipReason::Disabled);
        }
        if stop(Stage::Export) {
            return Ok(());
        }

        // 4. raft
        if s.raft.enabled {
            let local = local_models(&s.raft.generator, &generator);
            let plan = Plan {
                stage: Stage::Raft,
                settings: with_search(to_json(&s.raft), &s.index.search),
                inputs: vec![l.chunks(), l.index()],
                models: local,
                prompts: true,
                outputs: stage::raft::output_files(&s.raft, &l.raft())?,
                clean: stage::raft::existing_files(&l.raft()),
            };
            let paths = stage::raft::RaftPaths {
                chunks: l.chunks(),
                index: Some(l.index()),
                search: s.index.search,
                output: l.raft(),
                local_model: Some(generator.clone()),
            };
            r.stage(plan, |ctx, _| {
                let o = stage::raft::run(&s.raft, &paths, ctx)?;
                Ok(stage::raft::summary(&o, &l.raft()))
            })?;
        } else {
            r.skip(Stage::Raft, SkipReason::Disabled);
        }
        if stop(Stage::Raft) {
            return Ok(());
        }

        // 5. train
        let (data, valid) = if s.raft.enabled {
            (stage::raft::chat_file(&l.raft(), "train"), stage::raft::chat_file(&l.raft(), "valid"))
        } else if s.qa.enabled {
            (l.qa_train(), l.qa_valid())
        } else {
            return Err(PipelineError::Needs {
                stage: Stage::Train,
                reason: "needs a dataset: enable [raft] or [qa]".into(),
            });
        };
        let nonempty = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.len() > 0);
        if s.train.enabled {
            let valid = nonempty(&valid).then_some(valid);
            let mut inputs = vec![data.clone()];
            inputs.extend(valid.clone());
            let train_files = docraft_train::RunFiles::new(&l.train());
            let plan = Plan {
                stage: Stage::Train,
                settings: to_json(&s.train),
                inputs,
                models: vec![base.clone()],
                prompts: false,
                outputs: vec![train_files.adapter(), train_files.metrics()],
                clean: vec![l.train()],
            };
            let paths = stage::train::TrainPaths { base: base.clone(), data, valid, output: l.train() };
            r.stage(plan, |ctx, mode| {
                let resume = match mode {
                    StartMode::Resume if stage::train::has_checkpoint(&l.train()) => true,
                    StartMode::Resume => {
                        // Stopped before its first checkpoint: nothing to continue from.
                        let dir = l.train();
                        if dir.exists() {
                            std::fs::remove_dir_all(&dir).map_err(|e| PipelineError::io(&dir, e))?;
                        }
                        false
                    }
                    StartMode::Fresh => false,
                };
                let report = stage::train::run(&s.train, &paths, resume, ctx)?;
                Ok(stage::train::summary(&report))
            })?;
        } else {
            r.skip(Stage::Train, SkipReason::Disabled);
        }
        if stop(Stage::Train) {
            return Ok(());
        }

        // 6. eval
        if !s.eval.enabled {
            r.skip(Stage::Eval, SkipReason::Disabled);
            return Ok(());
        }
        let mut eval = s.eval.clone();
        let questions = if s.raft.enabled { l.raft() } else { l.qa() };
        let mut inputs = stage::eval::EvalInputs {
            output: l.report(),
            index: Some(l.index()),
            search: s.index.search,
            questions: Some(questions.clone()),
            ..stage::eval::EvalInputs::default()
        };
        let mut files = vec![l.index(), questions];
        let mut models = vec![embedder.clone()];
        if s.raft.enabled {
            let set = ["test", "valid", "train"]
                .into_iter()
                .map(|sp| (sp, stage::raft::eval_file(&l.raft(), sp)))
                .find(|f| nonempty(&f.1));
            if let Some((split, set)) = set {
                eval.note.push(if split == "train" {
                    "open-book QA on the train split: the test and valid splits are empty (too few documents), so \
                     these scores measure fitting, not generalization"
                        .to_string()
                } else {
                    format!("open-book QA on the {split} split (documents held out of training)")
                });
                inputs.qa_set = Some(set.clone());
                inputs.base = Some(base.clone());
                files.push(set);
                models.push(base.clone());
                if s.train.enabled {
                    inputs.adapter = Some(l.adapter());
                    files.push(l.adapter());
                }
                if eval.system_prompt.is_none() {
                    eval.system_prompt.clone_from(&s.raft.system_prompt);
                }
            }
        }
        if s.train.enabled {
            inputs.train_run = Some(l.train());
            files.push(docraft_train::RunFiles::new(&l.train()).metrics());
        }
        let plan = Plan {
            stage: Stage::Eval,
            settings: with_search(to_json(&eval), &s.index.search),
            inputs: files,
            models,
            prompts: false,
            outputs: vec![l.report()],
            clean: vec![l.report()],
        };
        r.stage(plan, |ctx, _| {
            let md = stage::eval::run(&eval, &inputs, ctx)?;
            Ok(vec![format!("report: {}", md.display())])
        })?;
        r.summary.report = Some(stage::eval::report_md(&l.report()));
        Ok(())
    }
}

/// The model files a stage's generator reads: its own `model`, else `[models] generator`, and
/// its LoRA adapter (which changes what it writes; the draft model does not); none for a
/// remote backend.
fn local_models(g: &docraft_llm::GeneratorSettings, generator: &Path) -> Vec<PathBuf> {
    let Some(_) = g.local_model() else { return Vec::new() };
    let model = g.model.as_ref().map_or_else(|| generator.to_path_buf(), PathBuf::from);
    std::iter::once(model).chain(g.lora.clone()).collect()
}

fn torn(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".torn");
    PathBuf::from(s)
}

/// Settings as JSON for the manifest and fingerprints (settings are plain data: this does
/// not fail; a `Null` would still fingerprint consistently).
fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The index stage's settings less how the index is searched (a query-time choice: changing
/// it does not rebuild the index).
fn without_search(mut index: serde_json::Value) -> serde_json::Value {
    if let (Some(fields), serde_json::Value::Object(search)) =
        (index.as_object_mut(), to_json(&crate::settings::RetrievalSettings::default()))
    {
        for key in search.keys() {
            fields.remove(key);
        }
    }
    index
}

/// A searching stage's settings with how the index is searched (changing it reruns the
/// stage).
fn with_search(mut stage: serde_json::Value, search: &crate::settings::RetrievalSettings) -> serde_json::Value {
    if let (Some(fields), serde_json::Value::Object(search)) = (stage.as_object_mut(), to_json(search)) {
        fields.insert("index_search".into(), serde_json::Value::Object(search));
    }
    stage
}

impl Runner<'_> {
    fn save(&self) -> Result<()> {
        self.manifest.save(&self.layout.manifest())
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(self.layout.dir()).unwrap_or(p).to_string_lossy().into_owned()
    }

    fn hashes(&self, paths: &[PathBuf]) -> Result<BTreeMap<String, String>> {
        paths.iter().filter(|p| p.exists()).map(|p| Ok((self.rel(p), hash_path(p)?))).collect()
    }

    fn skip(&mut self, stage: Stage, reason: SkipReason) {
        self.events.update(&Event::Skipped { stage, reason });
    }

    /// Runs `plan` through `work` unless it is unchanged.
    fn stage(&mut self, plan: Plan, work: impl FnOnce(&Ctx<'_>, StartMode) -> Result<Vec<String>>) -> Result<()> {
        let stage = plan.stage;
        if self.cancel.is_cancelled() {
            return Err(PipelineError::Cancelled { stage });
        }
        let inputs = self.hashes(&plan.inputs)?;
        let mut models = BTreeMap::new();
        for m in plan.models.iter().filter(|m| m.exists()) {
            let hash = match self.model_hashes.get(m) {
                Some(h) => h.clone(),
                None => hash_path(m)?,
            };
            self.model_hashes.insert(m.clone(), hash.clone());
            models.insert(m.display().to_string(), hash);
        }
        let prompts = if plan.prompts { self.prompts.clone() } else { BTreeMap::new() };
        // Model paths and the run directory stay out of the fingerprint (their content is in
        // it): a run directory or a model folder moved elsewhere is still up to date.
        let model_hashes: Vec<&String> = models.values().collect();
        let fingerprint = hash_str(
            &serde_json::json!({
                "stage": stage, "version": env!("CARGO_PKG_VERSION"), "settings": plan.settings,
                "inputs": inputs, "models": model_hashes, "prompts": prompts,
            })
            .to_string(),
        );
        let prev = self.manifest.stages.get(&stage).cloned();
        if let Some(p) = &prev
            && !self.force
            && p.status == StageStatus::Done
            && p.fingerprint == fingerprint
        {
            if self.hashes(&plan.outputs)? == p.outputs {
                self.skip(stage, SkipReason::Unchanged);
                self.summary.unchanged.push(stage);
                return Ok(());
            }
            self.events.update(&Event::Message {
                stage,
                level: crate::event::Level::Info,
                text: "outputs changed since the last run: redoing".into(),
            });
        }
        let mode = match &prev {
            Some(p)
                if !self.force
                    && matches!(p.status, StageStatus::Running | StageStatus::Cancelled)
                    && p.fingerprint == fingerprint =>
            {
                StartMode::Resume
            }
            _ => {
                for p in &plan.clean {
                    let removed = if p.is_dir() {
                        std::fs::remove_dir_all(p)
                    } else if p.exists() {
                        std::fs::remove_file(p)
                    } else {
                        Ok(())
                    };
                    removed.map_err(|e| PipelineError::io(p, e))?;
                }
                StartMode::Fresh
            }
        };
        self.manifest.stages.insert(
            stage,
            StageRecord {
                status: StageStatus::Running,
                fingerprint,
                settings: plan.settings,
                inputs,
                models,
                prompts,
                started_unix: now(),
                ..StageRecord::default()
            },
        );
        self.save()?;
        self.events.update(&Event::Started { stage, mode });
        let t0 = Instant::now();
        let ctx = Ctx::new(stage, self.events, self.cancel.clone());
        let result = work(&ctx, mode);
        let outputs = self.hashes(&plan.outputs)?;
        let seconds = t0.elapsed().as_secs_f64();
        let cancelled = self.cancel.is_cancelled() || result.as_ref().is_err_and(PipelineError::is_cancelled);
        let rec = self.manifest.stages.entry(stage).or_default();
        rec.seconds = Some(seconds);
        rec.finished_unix = Some(now());
        match result {
            Ok(_) | Err(_) if cancelled => {
                rec.status = StageStatus::Cancelled;
                self.save()?;
                self.events.update(&Event::Cancelled { stage });
                Err(PipelineError::Cancelled { stage })
            }
            Ok(summary) => {
                rec.status = StageStatus::Done;
                rec.outputs = outputs;
                rec.summary.clone_from(&summary);
                self.save()?;
                self.summary.ran.push(stage);
                self.events.update(&Event::Finished { stage, seconds, summary });
                Ok(())
            }
            Err(e) => {
                rec.status = StageStatus::Failed;
                rec.error = Some(e.to_string());
                self.save()?;
                self.events.update(&Event::Failed { stage, error: e.to_string() });
                Err(e)
            }
        }
    }
}
