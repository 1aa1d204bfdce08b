"""Page-wide CSS and the navigation shortcuts (n / p / u; the canvas handles its own keys)."""

CSS = """
#banner { background: #fff4ce; border: 1px solid #d9a400; border-radius: 6px; padding: 2px 10px; font-size: 13px; }
#banner p { margin: 2px 0; }
#banner summary { cursor: pointer; }
.muted { color: var(--body-text-color-subdued); font-size: 0.92em; }
.ps-download { display: inline-block; margin: 4px 8px 4px 0; padding: 4px 12px; border-radius: 6px;
               border: 1px solid var(--border-color-primary); background: var(--button-secondary-background-fill);
               text-decoration: none; font-weight: 600; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px; margin: 0 4px -1px 8px;
          border: 1px solid rgba(128,128,128,.6); }
.swatch.big { width: 18px; height: 18px; margin-right: 8px; vertical-align: middle; }
table.classes td, table.classes th { padding: 4px 10px; }
/* A steady page: nothing above or around the canvas changes height while you work (one-line status and
   title, cut with an ellipsis; the canvas's palette scrolls sideways). */
#status-line { font-size: 12px; height: 20px; overflow: hidden; }
#status-line p { margin: 2px 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#gallery .caption-label { font-size: 10px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
                          max-width: 100%; line-height: 1.1; padding: 1px 4px; }
#view-note { min-height: 2.4em; }
#header h2 { margin: 0; font-size: 18px; }
#header .muted { font-size: 12px; }
#header p, #header h2 { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#title p { margin: 2px 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
"""

SHORTCUTS_JS = """
<script>
(() => {
  if (window.__probesegKeys) return;
  window.__probesegKeys = true;
  const typing = (el) => el && (el.isContentEditable || el.tagName === 'TEXTAREA' ||
      (el.tagName === 'INPUT' && !['radio', 'checkbox', 'range', 'button'].includes(el.type)));
  const click = (sel) => { const el = document.querySelector(sel); if (el) { el.click(); return true; } return false; };
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    let done = false;
    if (e.key === 'n') { done = click('#next-btn'); }
    else if (e.key === 'p') { done = click('#prev-btn'); }
    else if (e.key === 'u') { done = click('#uncertain-btn'); }
    else if (e.key === 'g') { done = click('#suggest-btn'); }
    if (done) e.preventDefault();
  }, true);
})();
</script>
"""
