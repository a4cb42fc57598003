//! A playbook loaded at the prompt (`:load`): it runs on its own thread as a normal run —
//! parameters validated, journaled, resumable — but holds before each top-level step until
//! the operator says `:next` or `:run`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::Result;
use crate::playbook::runner::{self, Gate, RunReport, RunRequest};
use crate::playbook::Playbook;
use crate::run::{StepGate, StepReport};

/// What the loaded playbook tells the prompt.
pub enum Event {
    /// Holding before this step.
    Holding(String),
    /// A top-level step ended.
    Ended(StepReport),
    /// The run is over (or never started: invalid parameters).
    Finished(Box<Result<RunReport>>),
}

/// What the prompt tells the loaded playbook at a hold.
enum Go {
    /// Run the next step, then hold again.
    Step,
    /// Run to the end without holding.
    Continue,
}

struct ChannelGate {
    events: Sender<Event>,
    commands: Mutex<Receiver<Go>>,
    continuing: AtomicBool,
}

impl StepGate for ChannelGate {
    fn before(&self, step: &str) -> bool {
        if self.continuing.load(Ordering::SeqCst) {
            return true;
        }
        if self.events.send(Event::Holding(step.to_string())).is_err() {
            return false;
        }
        let command = self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recv();
        match command {
            Ok(Go::Step) => true,
            Ok(Go::Continue) => {
                self.continuing.store(true, Ordering::SeqCst);
                true
            }
            // The prompt let go of the playbook (`:load` again, or the REPL ended).
            Err(_) => false,
        }
    }

    fn after(&self, report: &StepReport) {
        let _ = self.events.send(Event::Ended(report.clone()));
    }
}

/// A playbook being stepped through.
pub struct Loaded {
    pub name: String,
    /// Step names as written in the source, in order (templates keep their `${...}`).
    pub written_steps: Vec<String>,
    /// Top-level steps that ended, in order.
    pub done: Vec<StepReport>,
    /// The step it holds before, if holding.
    pub holding: Option<String>,
    commands: Option<Sender<Go>>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

impl Loaded {
    /// Starts the playbook on its own thread and waits until it holds before its first step
    /// (or ends). `request.gate` is set here.
    pub fn start(mut request: RunRequest) -> Result<(Loaded, Option<Event>)> {
        let target = request.target.clone().unwrap_or_default();
        let playbook = Playbook::load(&target)?;
        let (event_tx, events) = mpsc::channel();
        let (commands, command_rx) = mpsc::channel();
        request.gate = Some(Gate(Arc::new(ChannelGate {
            events: event_tx.clone(),
            commands: Mutex::new(command_rx),
            continuing: AtomicBool::new(false),
        })));
        let thread = std::thread::spawn(move || {
            let report = runner::run(request);
            let _ = event_tx.send(Event::Finished(Box::new(report)));
        });
        let mut loaded = Loaded {
            name: playbook.header.name.clone(),
            written_steps: written_steps(&playbook.source.text),
            done: Vec::new(),
            holding: None,
            commands: Some(commands),
            events,
            thread: Some(thread),
        };
        let first = loaded.wait(|_| {});
        Ok((loaded, first))
    }

    /// Lets the next step run; returns the event that ended the wait (the next hold, or the
    /// end of the run), calling `on_step` for every step that ended meanwhile.
    pub fn next(&mut self, on_step: impl FnMut(&StepReport)) -> Option<Event> {
        self.release(Go::Step);
        self.wait(on_step)
    }

    /// Lets the rest of the playbook run.
    pub fn run_to_end(&mut self, on_step: impl FnMut(&StepReport)) -> Option<Event> {
        self.release(Go::Continue);
        self.wait(on_step)
    }

    fn release(&mut self, go: Go) {
        if self.holding.take().is_some() {
            if let Some(commands) = &self.commands {
                let _ = commands.send(go);
            }
        }
    }

    fn wait(&mut self, mut on_step: impl FnMut(&StepReport)) -> Option<Event> {
        loop {
            match self.events.recv() {
                Ok(Event::Ended(report)) => {
                    on_step(&report);
                    self.done.push(report);
                }
                Ok(Event::Holding(step)) => {
                    self.holding = Some(step.clone());
                    return Some(Event::Holding(step));
                }
                Ok(finished @ Event::Finished(_)) => {
                    self.commands = None;
                    return Some(finished);
                }
                Err(_) => return None,
            }
        }
    }

    /// Whether the run is over.
    pub fn is_finished(&self) -> bool {
        self.commands.is_none()
    }
}

impl Drop for Loaded {
    /// Letting go of a holding playbook stops it there, journaled as interrupted (resumable).
    fn drop(&mut self) {
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The step names a playbook's source passes to `step("...")` or `` step(`...`) ``, in order.
pub fn written_steps(source: &str) -> Vec<String> {
    let mut steps = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("step(") {
        let preceded_by_word = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        rest = &rest[at + 5..];
        let trimmed = rest.trim_start();
        let Some(quote) = trimmed.chars().next().filter(|c| matches!(c, '"' | '`')) else {
            continue;
        };
        if preceded_by_word {
            continue;
        }
        if let Some(end) = trimmed[1..].find(quote) {
            steps.push(trimmed[1..=end].to_string());
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::written_steps;

    #[test]
    fn finds_literal_and_template_step_names_in_order() {
        let source = "let a = step(\"read history\", || 1);\n// my_step(\"no\")\n\
                      for m in x { step(`apply ${m.script}`, || 2); }\nstep( \"last\", || 3);";
        assert_eq!(
            written_steps(source),
            ["read history", "apply ${m.script}", "last"]
        );
    }
}
